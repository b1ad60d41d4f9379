# Evaluation outputs → tidy tables, one set per strategy (a figure reads only its strategies'), then together.


rule aggregate_strategy:
    input:
        results=get_strategy_results,
        samples=get_strategy_samples,
        benchmarks=get_strategy_benchmarks,
    output:
        **{table: f"{STRATEGY_DIR}/{table}.csv" for table in STRATEGY_TABLES},
        # per-document outcomes (none for published data, which has lm-eval's stderr only)
        **({} if CFG["published"] else {"outcomes": STRATEGY_OUTCOMES}),
    log:
        "logs/aggregate/{strategy}.log",
    benchmark:
        rule_benchmark("aggregate_strategy/{strategy}")
    conda:
        ANALYSIS_ENV
    params:
        variants=get_strategy_table_params,
        bootstrap=BOOTSTRAP,
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


# One table of every per-document outcome (plain points and budget-sweep points): what every interval is drawn from.
rule outcomes:
    input:
        strategies=expand(STRATEGY_OUTCOMES, strategy=list(CFG["strategies"])),
        sweeps=SWEEP_OUTCOMES,
    output:
        outcomes=OUTCOMES_TABLE,
    log:
        "logs/outcomes.log",
    benchmark:
        rule_benchmark("outcomes")
    conda:
        ANALYSIS_ENV
    script:
        SCRIPT
