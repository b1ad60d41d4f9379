rule build_demo_model:
    input:
        corpus=f"{workflow.basedir}/config/demo_corpus",
    output:
        directory(f"{DEMO_MODELS_DIR}/{{name}}"),
    log:
        "logs/build_demo_model/{name}.log",
    benchmark:
        "logs/benchmarks/build_demo_model/{name}.tsv"
    conda:
        "../../envs/evaluate-hf.yaml"
    threads: 1
    priority: get_build_priority
    params:
        spec=get_demo_model_params,
    script:
        f"{SCRIPTS}/build_demo_model.py"
