rule ingest_published:
    output:
        evals=directory(f"{PUBLISHED_DIR}/evals"),
        models=f"{PUBLISHED_DIR}/published_models.csv",
    log:
        "logs/ingest_published.log",
    benchmark:
        rule_benchmark("ingest_published")
    conda:
        ANALYSIS_ENV
    params:
        source=CFG["published"],
    script:
        SCRIPT


# Architecture facts and the cost per request under each configured cost model (cotscale.cost).
rule costs:
    input:
        **{
            table: table_path(table)
            for table in ("tokens", "inference_scaling", "compute")
        },
        # every request priced on its own usage (none for published outputs: their mean request)
        usage=get_usage_files(),
    output:
        **{table: report_table(table) for table in COST_TABLES},
    log:
        "logs/costs.log",
    benchmark:
        rule_benchmark("costs")
    conda:
        ANALYSIS_ENV
    params:
        spec=canonical(COST_SPEC),
    script:
        SCRIPT


# Experiment 2's fits read only the baseline and CoT strategies' tables (and their usage: R* per cost model).
rule analysis:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("baseline", "cot")),
        tokens=get_strategy_tables(get_role_strategies("baseline", "cot"), "tokens"),
        outcomes=get_role_outcomes("baseline", "cot"),
        usage=get_usage_files(get_role_strategies("baseline", "cot")),
    output:
        **{table: report_table(table) for table in PAIR_TABLES},
        table1_md=table_path("table1_tokens", "md"),
        table1_tex=table_path("table1_tokens", "tex"),
    log:
        "logs/analysis.log",
    benchmark:
        rule_benchmark("analysis")
    conda:
        ANALYSIS_ENV
    params:
        baseline=CFG["analysis"]["baseline"],
        cot=CFG["analysis"]["cot"],
        seed=CFG["seed"],
        empty_warning=CFG["analysis"]["empty_warning"],
        bootstrap=BOOTSTRAP,
        cost=canonical(COST_SPEC),
    script:
        SCRIPT


# Our PCA reads the log-likelihood strategy's scores; Ruan et al.'s needs no evaluation at all.
rule pca:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("llh")),
    output:
        **{table: report_table(table) for table in PCA_OURS_TABLES},
    log:
        "logs/pca.log",
    benchmark:
        rule_benchmark("pca")
    conda:
        ANALYSIS_ENV
    params:
        llh=CFG["analysis"]["llh"],
    script:
        SCRIPT


rule pca_ruan:
    output:
        **{table: report_table(table) for table in PCA_RUAN_TABLES},
    log:
        "logs/pca_ruan.log",
    benchmark:
        rule_benchmark("pca_ruan")
    conda:
        ANALYSIS_ENV
    params:
        ruan=CFG["analysis"].get("ruan_table"),
    script:
        SCRIPT


# The planner: the cheapest evaluated operating point for each lifetime-request count × target score, and how sure
# (p_cheapest: bootstrap draws of outcomes.parquet; published data: normal draws from the stderr).
rule plan:
    input:
        **({} if CFG["published"] else {"outcomes": OUTCOMES_TABLE}),
        **{
            table: table_path(table)
            for table in (
                "benchmarks",
                "tokens",
                "compute",
                "inference_scaling",
                "models",
            )
        },
    output:
        **{table: report_table(table) for table in PLAN_TABLES},
    log:
        "logs/plan.log",
    benchmark:
        rule_benchmark("plan")
    conda:
        ANALYSIS_ENV
    params:
        grid=canonical(CFG["plan"]),
        bootstrap=BOOTSTRAP,
        cost=canonical(
            {**COST_SPEC, "realistic": CFG["analysis"]["realistic_cost_model"]}
        ),
    script:
        SCRIPT


# Budget sweeps (strategies with `k: [...]` or a `max_gen_toks` list): operating points from the samples drawn.
SWEEPS = {
    name: budget_sweep(s) for name, s in CFG["strategies"].items() if budget_sweep(s)
}
SWEEP_RUNS = [
    (model, strategy, task)
    for strategy in SWEEPS
    for model in ([] if CFG["published"] else STRATEGY_MODELS[strategy])
    for task in TASKS
]


rule inference_scaling:
    input:
        results=[
            f"{EVAL_DIR.format(model=m, strategy=s, task=t)}/results.json"
            for m, s, t in SWEEP_RUNS
        ],
        samples=[
            f"{EVAL_DIR.format(model=m, strategy=s, task=t)}/samples.jsonl.gz"
            for m, s, t in SWEEP_RUNS
        ],
        # each document's prompt tokens: its sweep points priced per cost model (cotscale.sweep_cost)
        usage=[
            f"{EVAL_DIR.format(model=m, strategy=s, task=t)}/usage.jsonl.gz"
            for m, s, t in SWEEP_RUNS
        ],
    output:
        **{table: report_table(table) for table in SCALING_TABLES},
        outcomes=SWEEP_OUTCOMES,
    log:
        "logs/inference_scaling.log",
    benchmark:
        rule_benchmark("inference_scaling")
    conda:
        # lm-eval's filters and metrics re-extract and score each response of a generative task
        "../../envs/evaluate-hf.yaml"
    params:
        sweeps=canonical(SWEEPS),
        runs=[s for _, s, _ in SWEEP_RUNS],
        seed=CFG["seed"],
        bootstrap=BOOTSTRAP,
        cost=canonical(COST_SPEC),
    script:
        SCRIPT


# CoT gains with their paired intervals and tests: baseline vs CoT, log-likelihood vs baseline (cotscale.uncertainty).
rule cot_gain:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("llh", "baseline", "cot")),
        outcomes=get_role_outcomes("llh", "baseline", "cot"),
    output:
        table=report(
            "results/tables/cot_gain.csv",
            caption="../report/cot_gain.rst",
            category="Tables",
        ),
    log:
        "logs/cot_gain.log",
    benchmark:
        rule_benchmark("cot_gain")
    conda:
        ANALYSIS_ENV
    params:
        pairs=get_gain_pairs(),
        bootstrap=BOOTSTRAP,
    script:
        SCRIPT
