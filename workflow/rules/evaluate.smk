# Evaluation suites: one job per model revision × strategy (`suite: model`: per model revision), one model load,
# every task of the job's strategies evaluated in it; outputs per task (cotscale.evaluate).

if CFG["suite"] == "strategy":

    rule evaluate:
        input:
            demo_model_dir,
        output:
            results=suite_outputs(["{strategy}"], "results.json"),
            samples=suite_outputs(["{strategy}"], "samples.jsonl.gz"),
            usage=suite_outputs(["{strategy}"], "usage.jsonl.gz"),
        log:
            "logs/evaluate/{model}/{strategy}.log",
        benchmark:
            "logs/benchmarks/evaluate/{model}/{strategy}.tsv"
        conda:
            evaluation_env
        threads: eval_threads
        resources:
            gpu=eval_gpus,
            mem_mb=eval_mem_mb,
            runtime=eval_runtime,
            # one task per job whatever its GPU count: the job starts its own tensor/data-parallel workers
            tasks_per_gpu=0,
        params:
            strategies=suite_strategies,
            spec=suite_params,
        script:
            f"{SCRIPTS}/evaluate.py"

else:
    # One rule per distinct set of strategies (models restricted by a strategy's `models:` run fewer).
    for index, strategies in enumerate(dict.fromkeys(SUITE_STRATEGIES.values())):

        rule:
            name:
                f"evaluate_model_{index}"
            input:
                demo_model_dir,
            output:
                results=suite_outputs(strategies, "results.json"),
                samples=suite_outputs(strategies, "samples.jsonl.gz"),
                usage=suite_outputs(strategies, "usage.jsonl.gz"),
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
                evaluation_env
            threads: eval_threads
            resources:
                gpu=eval_gpus,
                mem_mb=eval_mem_mb,
                runtime=eval_runtime,
                tasks_per_gpu=0,
            params:
                strategies=suite_strategies,
                spec=suite_params,
            script:
                f"{SCRIPTS}/evaluate.py"
