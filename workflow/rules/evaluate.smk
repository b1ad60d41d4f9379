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
    threads: 1
    conda:
        evaluation_env
    script:
        RULE_SCRIPT
