# Evaluation outputs → tidy tables, one set per strategy (a figure reads only its strategies'), then together.


rule aggregate_strategy:
    input:
        results=strategy_results,
        benchmarks=strategy_benchmarks,
    output:
        **{table: f"{STRATEGY_DIR}/{table}.csv" for table in STRATEGY_TABLES},
    log:
        "logs/aggregate/{strategy}.log",
    conda:
        ANALYSIS_ENV
    params:
        variants=strategy_table_params,
    script:
        f"{SCRIPTS}/aggregate_strategy.py"


rule aggregate:
    input:
        benchmarks=strategy_tables(list(CFG["strategies"])),
    output:
        **{
            table: report(
                f"results/tables/{table}.csv",
                caption=f"../report/{table}.rst",
                category="Tables",
            )
            for table in STRATEGY_TABLES
        },
    log:
        "logs/aggregate.log",
    conda:
        ANALYSIS_ENV
    script:
        f"{SCRIPTS}/aggregate.py"
