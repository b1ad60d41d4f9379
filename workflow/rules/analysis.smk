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


# Architecture facts and the cost per request under each configured cost model (cotscale.cost).
rule costs:
    input:
        tokens="results/tables/tokens.csv",
        inference_scaling="results/tables/inference_scaling.csv",
        compute="results/tables/compute.csv",
        # every request priced on its own usage (none for published outputs: their mean request)
        usage=get_usage_files(),
    output:
        models=report(
            "results/tables/models.csv",
            caption="../report/models.rst",
            category="Tables",
        ),
        costs=report(
            "results/tables/costs.csv",
            caption="../report/costs.rst",
            category="Tables",
        ),
    log:
        "logs/costs.log",
    conda:
        ANALYSIS_ENV
    params:
        spec=canonical(COST_SPEC),
    script:
        f"{SCRIPTS}/costs.py"


# Experiment 2's fits read only the baseline and CoT strategies' tables (and their usage: R* per cost model).
rule analysis:
    input:
        benchmarks=get_strategy_tables(get_role_strategies("baseline", "cot")),
        tokens=get_strategy_tables(get_role_strategies("baseline", "cot"), "tokens"),
        usage=get_usage_files(get_role_strategies("baseline", "cot")),
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
        empty_warning=CFG["analysis"]["empty_warning"],
        cost=canonical(COST_SPEC),
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
        inference_scaling="results/tables/inference_scaling.csv",
        models="results/tables/models.csv",
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
        cost=canonical(
            {**COST_SPEC, "realistic": CFG["analysis"]["realistic_cost_model"]}
        ),
    script:
        f"{SCRIPTS}/plan.py"


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
        results=[f"results/evals/{m}/{s}/{t}/results.json" for m, s, t in SWEEP_RUNS],
        samples=[
            f"results/evals/{m}/{s}/{t}/samples.jsonl.gz" for m, s, t in SWEEP_RUNS
        ],
    output:
        table=report(
            "results/tables/inference_scaling.csv",
            caption="../report/inference_scaling.rst",
            category="Tables",
        ),
    log:
        "logs/inference_scaling.log",
    conda:
        # lm-eval's filters and metrics re-extract and score each response of a generative task
        "../../envs/evaluate-hf.yaml"
    params:
        sweeps=canonical(SWEEPS),
        runs=[s for _, s, _ in SWEEP_RUNS],
        seed=CFG["seed"],
    script:
        f"{SCRIPTS}/inference_scaling.py"
