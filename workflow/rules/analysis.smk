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
        RULE_SCRIPT


rule analysis:
    input:
        benchmarks="results/tables/benchmarks.csv",
        tokens="results/tables/tokens.csv",
    output:
        **{
            table: report(
                f"results/tables/{table}.csv",
                caption=f"../report/{table}.rst",
                category="Tables",
            )
            for table in ANALYSIS_TABLES
        },
        table1_md="results/tables/table1_tokens.md",
        table1_tex="results/tables/table1_tokens.tex",
    log:
        "logs/analysis.log",
    conda:
        ANALYSIS_ENV
    params:
        ruan=CFG["analysis"].get("ruan_table"),
    script:
        RULE_SCRIPT
