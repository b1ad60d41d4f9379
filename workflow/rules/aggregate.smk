# Evaluation outputs → tidy tables, one set per strategy (a figure reads only its strategies'), then together.


rule aggregate_strategy:
    input:
        results=get_strategy_results,
        benchmarks=get_strategy_benchmarks,
    output:
        **{table: f"{STRATEGY_DIR}/{table}.csv" for table in STRATEGY_TABLES},
    log:
        "logs/aggregate/{strategy}.log",
    conda:
        ANALYSIS_ENV
    params:
        variants=get_strategy_table_params,
    script:
        f"{SCRIPTS}/aggregate_strategy.py"


rule aggregate:
    input:
        benchmarks=get_strategy_tables(list(CFG["strategies"])),
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
