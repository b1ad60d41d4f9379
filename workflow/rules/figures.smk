rule fig1_overall_vs_train_flops:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig1_overall_vs_train_flops.png",
            caption="../report/fig1.rst",
            category="Figures",
        ),
        pdf="figures/fig1_overall_vs_train_flops.pdf",
    log:
        "logs/figures/fig1_overall_vs_train_flops.log",
    script:
        RULE_SCRIPT
