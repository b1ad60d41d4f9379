# Evaluation outputs → tidy tables, one set per strategy (a figure reads only its strategies'), then together.


rule aggregate_strategy:
    input:
        results=get_strategy_results,
        benchmarks=get_strategy_benchmarks,
    output:
        **{table: f"{STRATEGY_DIR}/{table}.csv" for table in STRATEGY_TABLES},
    log:
        "logs/aggregate/{strategy}.log",
    benchmark:
        rule_benchmark("aggregate_strategy/{strategy}")
    conda:
        ANALYSIS_ENV
    params:
        variants=get_strategy_table_params,
    script:
        SCRIPT


rule aggregate:
    input:
        benchmarks=get_strategy_tables(list(CFG["strategies"])),
    output:
        **{table: report_table(table) for table in STRATEGY_TABLES},
    log:
        "logs/aggregate.log",
    benchmark:
        rule_benchmark("aggregate")
    conda:
        ANALYSIS_ENV
    script:
        SCRIPT
