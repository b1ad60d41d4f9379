# One rule per figure, named after its function in cotscale.figures (cotscale.workflow dispatches on the rule
# name). Inputs are only the tables the figure reads, so `snakemake figures/<name>.pdf` builds just those.


rule fig1_overall_vs_train_flops:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig1_overall_vs_train_flops.png",
            caption="../report/fig1.rst",
            category="Figures",
            labels={
                "#": "01",
                "figure": "Fig. 1",
                "shows": "overall score vs train FLOPs",
            },
        ),
        pdf="figures/fig1_overall_vs_train_flops.pdf",
    log:
        "logs/figures/fig1_overall_vs_train_flops.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig2_loglikelihood_vs_hybrid:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig2_loglikelihood_vs_hybrid.png",
            caption="../report/fig2.rst",
            category="Figures",
            labels={
                "#": "02",
                "figure": "Fig. 2",
                "shows": "log-likelihood vs hybrid format",
            },
        ),
        pdf="figures/fig2_loglikelihood_vs_hybrid.pdf",
    log:
        "logs/figures/fig2_loglikelihood_vs_hybrid.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig3_cot_vs_no_cot:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig3_cot_vs_no_cot.png",
            caption="../report/fig3.rst",
            category="Figures",
            labels={
                "#": "03",
                "figure": "Fig. 3",
                "shows": "score with vs without CoT",
            },
        ),
        pdf="figures/fig3_cot_vs_no_cot.pdf",
    log:
        "logs/figures/fig3_cot_vs_no_cot.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig4_cot_gain_vs_train_flops:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig4_cot_gain_vs_train_flops.png",
            caption="../report/fig4.rst",
            category="Figures",
            labels={
                "#": "04",
                "figure": "Fig. 4",
                "shows": "CoT improvement vs train FLOPs",
            },
        ),
        pdf="figures/fig4_cot_gain_vs_train_flops.pdf",
    log:
        "logs/figures/fig4_cot_gain_vs_train_flops.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule table1_tokens:
    input:
        table1_tokens="results/tables/table1_tokens.csv",
    output:
        png=report(
            "figures/table1_tokens.png",
            caption="../report/table1_tokens_figure.rst",
            category="Figures",
            labels={
                "#": "05",
                "figure": "Table I",
                "shows": "tokens per request, baseline vs CoT",
            },
        ),
        pdf="figures/table1_tokens.pdf",
    log:
        "logs/figures/table1_tokens.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig5_pca_loadings_ours:
    input:
        pca_loadings_ours="results/tables/pca_loadings_ours.csv",
    output:
        png=report(
            "figures/fig5_pca_loadings_ours.png",
            caption="../report/fig5.rst",
            category="Figures",
            labels={
                "#": "06",
                "figure": "Fig. 5",
                "shows": "PCA loadings, our models",
            },
        ),
        pdf="figures/fig5_pca_loadings_ours.pdf",
    log:
        "logs/figures/fig5_pca_loadings_ours.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig6_pca_loadings_ruan:
    input:
        pca_loadings_ruan="results/tables/pca_loadings_ruan.csv",
        pca_loadings_ruan_no_humaneval="results/tables/pca_loadings_ruan_no_humaneval.csv",
    output:
        png=report(
            "figures/fig6_pca_loadings_ruan.png",
            caption="../report/fig6.rst",
            category="Figures",
            labels={
                "#": "07",
                "figure": "Fig. 6",
                "shows": "PCA loadings, Ruan et al., HumanEval ablated",
            },
        ),
        pdf="figures/fig6_pca_loadings_ruan.pdf",
    log:
        "logs/figures/fig6_pca_loadings_ruan.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig7_isoflop:
    input:
        isoflop_fit="results/tables/isoflop_fit.csv",
        table1_tokens="results/tables/table1_tokens.csv",
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig7_isoflop.png",
            caption="../report/fig7.rst",
            category="Figures",
            labels={
                "#": "08",
                "figure": "Fig. 7",
                "shows": "score vs inference tokens, IsoFLOP lines",
            },
        ),
        pdf="figures/fig7_isoflop.pdf",
    log:
        "logs/figures/fig7_isoflop.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig8_tef_ratio_vs_token_ratio:
    input:
        train_equivalent="results/tables/train_equivalent.csv",
        table1_tokens="results/tables/table1_tokens.csv",
    output:
        png=report(
            "figures/fig8_tef_ratio_vs_token_ratio.png",
            caption="../report/fig8.rst",
            category="Figures",
            labels={
                "#": "09",
                "figure": "Fig. 8",
                "shows": "TEF/C vs CoT token ratio",
            },
        ),
        pdf="figures/fig8_tef_ratio_vs_token_ratio.pdf",
    log:
        "logs/figures/fig8_tef_ratio_vs_token_ratio.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig9_lifetime_cost:
    input:
        crossover="results/tables/crossover.csv",
        train_equivalent="results/tables/train_equivalent.csv",
    output:
        png=report(
            "figures/fig9_lifetime_cost.png",
            caption="../report/fig9.rst",
            category="Figures",
            labels={
                "#": "10",
                "figure": "Fig. 9",
                "shows": "lifetime cost vs requests, crossover",
            },
        ),
        pdf="figures/fig9_lifetime_cost.pdf",
    log:
        "logs/figures/fig9_lifetime_cost.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT


rule fig10_free_form_cot:
    input:
        benchmarks="results/tables/benchmarks.csv",
    output:
        png=report(
            "figures/fig10_free_form_cot.png",
            caption="../report/fig10.rst",
            category="Figures",
            labels={
                "#": "11",
                "figure": "Fig. 10",
                "shows": "free-form CoT vs log-likelihood baseline",
            },
        ),
        pdf="figures/fig10_free_form_cot.pdf",
    log:
        "logs/figures/fig10_free_form_cot.log",
    conda:
        ANALYSIS_ENV
    script:
        RULE_SCRIPT
