# Evaluation suites: one job per model revision × strategy (`suite: model`: per model revision), one model load,
# every task of the job's strategies evaluated in it; outputs per task (cotscale.evaluate).
#
# One rule body for both suite kinds. `suite: strategy` has one rule, `evaluate`, with {strategy} a wildcard;
# `suite: model` has one rule per distinct set of strategies (models restricted by a strategy's `models:` run
# fewer), `evaluate` for the first and `evaluate_model_<i>` for the others, each constrained to its models.
EVALUATE_RULES = (
    [("evaluate", ["{strategy}"], MODEL_PATTERN)]
    if CFG["suite"] == "strategy"
    else [
        (
            "evaluate" if index == 0 else f"evaluate_model_{index}",
            strategies,
            "|".join(
                re.escape(m)
                for m, names in SUITE_STRATEGIES.items()
                if names == strategies
            ),
        )
        for index, strategies in enumerate(dict.fromkeys(SUITE_STRATEGIES.values()))
    ]
)


for name, strategies, models in EVALUATE_RULES:

    rule:
        name:
            name
        input:
            get_demo_model_dir,
        output:
            results=get_suite_outputs(strategies, "results.json"),
            samples=get_suite_outputs(strategies, "samples.jsonl.gz"),
            usage=get_suite_outputs(strategies, "usage.jsonl.gz"),
        log:
            contract.EVAL_LOG[CFG["suite"]],
        benchmark:
            EVAL_BENCHMARK
        wildcard_constraints:
            model=models,
        priority: get_eval_priority
        conda:
            get_evaluation_env
        threads: get_eval_threads
        resources:
            gpu=get_eval_gpus,
            mem_mb=get_eval_mem_mb,
            runtime=get_eval_runtime,
            # one task per job whatever its GPU count: the job starts its own tensor/data-parallel workers
            tasks_per_gpu=0,
            # SLURM signals the job before its time limit: it stops and the retry resumes (cotscale.preempt)
            slurm_extra=f"'{SLURM_SIGNAL}'",
        params:
            strategies=get_suite_strategies,
            spec=get_suite_params,
        script:
            SCRIPT
