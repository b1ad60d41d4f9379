# Evaluation suites: one job per model revision × strategy (`suite: model`: per model revision), one model load,
# every task of the job's strategies evaluated in it; outputs per task (cotscale.evaluate).

if CFG["suite"] == "strategy":

    rule evaluate:
        input:
            get_demo_model_dir,
        output:
            results=get_suite_outputs(["{strategy}"], "results.json"),
            samples=get_suite_outputs(["{strategy}"], "samples.jsonl.gz"),
            usage=get_suite_outputs(["{strategy}"], "usage.jsonl.gz"),
        log:
            "logs/evaluate/{model}/{strategy}.log",
        benchmark:
            "logs/benchmarks/evaluate/{model}/{strategy}.tsv"
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
            f"{SCRIPTS}/evaluate.py"

else:
    # One rule per distinct set of strategies (models restricted by a strategy's `models:` run fewer).
    for index, strategies in enumerate(dict.fromkeys(SUITE_STRATEGIES.values())):

        rule:
            name:
                f"evaluate_model_{index}"
            input:
                get_demo_model_dir,
            output:
                results=get_suite_outputs(strategies, "results.json"),
                samples=get_suite_outputs(strategies, "samples.jsonl.gz"),
                usage=get_suite_outputs(strategies, "usage.jsonl.gz"),
            log:
                "logs/evaluate/{model}.log",
            benchmark:
                "logs/benchmarks/evaluate/{model}.tsv"
            wildcard_constraints:
                model="|".join(
                    re.escape(m)
                    for m, names in SUITE_STRATEGIES.items()
                    if names == strategies
                ),
            conda:
                get_evaluation_env
            threads: get_eval_threads
            resources:
                gpu=get_eval_gpus,
                mem_mb=get_eval_mem_mb,
                runtime=get_eval_runtime,
                tasks_per_gpu=0,
                slurm_extra=f"'{SLURM_SIGNAL}'",
            params:
                strategies=get_suite_strategies,
                spec=get_suite_params,
            script:
                f"{SCRIPTS}/evaluate.py"
