rule evaluate:
    input:
        demo_model_dir,
    output:
        results=f"{EVAL_DIR}/results.json",
        samples=f"{EVAL_DIR}/samples.jsonl.gz",
        usage=f"{EVAL_DIR}/usage.jsonl.gz",
    log:
        "logs/evaluate/{model}/{strategy}/{task}.log",
    benchmark:
        "logs/benchmarks/evaluate/{model}/{strategy}/{task}.tsv"
    conda:
        evaluation_env
    threads: eval_threads
    resources:
        gpu=eval_gpus,
        mem_mb=eval_mem_mb,
        runtime=eval_runtime,
        # one task per job whatever its GPU count: the job starts its own tensor/data-parallel workers
        tasks_per_gpu=0,
    script:
        RULE_SCRIPT
