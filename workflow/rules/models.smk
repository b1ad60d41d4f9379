rule build_demo_model:
    input:
        corpus=f"{CHECKOUT}/config/demo_corpus",
    output:
        directory(f"{DEMO_MODELS_DIR}/{{name}}"),
    log:
        "logs/build_demo_model/{name}.log",
    benchmark:
        rule_benchmark("build_demo_model/{name}")
    priority: get_build_priority
    conda:
        "../../envs/evaluate-hf.yaml"
    threads: 1
    params:
        spec=get_demo_model_params,
    script:
        SCRIPT
