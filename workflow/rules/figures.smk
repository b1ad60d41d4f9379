# One rule per figure of the registry (cotscale.registry): inputs are only the tables the figure reads, so
# `snakemake <figure>` runs only the evaluations of the strategies it draws.

for number, figure in enumerate(FIGURES, 1):

    rule:
        name:
            figure.name
        input:
            **get_figure_inputs(figure),
        output:
            png=report(
                f"figures/{figure.name}.png",
                caption=f"../report/{figure.caption}",
                category="Figures",
                labels={
                    "#": f"{number:02d}",
                    "figure": figure.label,
                    "shows": figure.shows,
                },
            ),
            pdf=f"figures/{figure.name}.pdf",
        log:
            f"logs/figures/{figure.name}.log",
        benchmark:
            rule_benchmark(f"figures/{figure.name}")
        conda:
            ANALYSIS_ENV
        params:
            figure=figure.name,
            spec=get_figure_params(figure),
        script:
            SCRIPT
