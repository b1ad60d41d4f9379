rule ingest_published:
    output:
        evals=directory(f"{PUBLISHED_DIR}/evals"),
        models=f"{PUBLISHED_DIR}/published_models.csv",
    log:
        "logs/ingest_published.log",
    conda:
        ANALYSIS_ENV
    params:
        source=CFG["published"],
    script:
        f"{SCRIPTS}/ingest_published.py"


# Experiment 2's fits read only the baseline and CoT strategies' tables.
rule analysis:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("baseline", "cot")),
        tokens=get_strategy_tables(get_role_strategies("baseline", "cot"), "tokens"),
    output:
        **{
            table: report(
                f"results/tables/{table}.csv",
                caption=f"../report/{table}.rst",
                category="Tables",
            )
            for table in PAIR_TABLES
        },
        table1_md="results/tables/table1_tokens.md",
        table1_tex="results/tables/table1_tokens.tex",
    log:
        "logs/analysis.log",
    conda:
        ANALYSIS_ENV
    params:
        baseline=CFG["analysis"]["baseline"],
        cot=CFG["analysis"]["cot"],
        seed=CFG["seed"],
    script:
        f"{SCRIPTS}/analysis.py"


# Our PCA reads the log-likelihood strategy's scores; Ruan et al.'s needs no evaluation at all.
rule pca:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("llh")),
    output:
        ours=report(
            "results/tables/pca_loadings_ours.csv",
            caption="../report/pca_loadings_ours.rst",
            category="Tables",
        ),
    log:
        "logs/pca.log",
    conda:
        ANALYSIS_ENV
    params:
        llh=CFG["analysis"]["llh"],
    script:
        f"{SCRIPTS}/pca.py"


rule pca_ruan:
    output:
        ruan=report(
            "results/tables/pca_loadings_ruan.csv",
            caption="../report/pca_loadings_ruan.rst",
            category="Tables",
        ),
        ruan_no_humaneval=report(
            "results/tables/pca_loadings_ruan_no_humaneval.csv",
            caption="../report/pca_loadings_ruan_no_humaneval.rst",
            category="Tables",
        ),
    log:
        "logs/pca_ruan.log",
    conda:
        ANALYSIS_ENV
    params:
        ruan=CFG["analysis"].get("ruan_table"),
    script:
        f"{SCRIPTS}/pca_ruan.py"


# The planner: the cheapest evaluated operating point for each lifetime-request count × target score.
rule plan:
    input:
        benchmarks="results/tables/benchmarks.csv",
        tokens="results/tables/tokens.csv",
        compute="results/tables/compute.csv",
    output:
        plan=report(
            "results/tables/plan.csv",
            caption="../report/plan.rst",
            category="Tables",
        ),
    log:
        "logs/plan.log",
    conda:
        ANALYSIS_ENV
    params:
        grid=canonical(CFG["plan"]),
    script:
        f"{SCRIPTS}/plan.py"
