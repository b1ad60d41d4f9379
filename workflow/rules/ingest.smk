# Results you already have: earlier `lm_eval --output_path OUT --log_samples` runs (config key lm_eval_outputs) are
# ingested into the evaluation contract instead of evaluated (cotscale.ingest); the tables read them like any other.

if INGESTED:

    rule ingest_lm_eval:
        input:
            get_ingest_files,
        output:
            results=get_suite_outputs(["{strategy}"], "results.json"),
            samples=get_suite_outputs(["{strategy}"], "samples.jsonl.gz"),
            usage=get_suite_outputs(["{strategy}"], "usage.jsonl.gz"),
        log:
            "logs/ingest_lm_eval/{model}/{strategy}.log",
        benchmark:
            rule_benchmark("ingest_lm_eval/{model}/{strategy}")
        wildcard_constraints:
            model="|".join(re.escape(m) for m in INGESTED),
            strategy="|".join(re.escape(s) for by in INGESTED.values() for s in by),
        conda:
            ANALYSIS_ENV
        params:
            folder=get_ingest_folder,
            spec=get_ingest_spec,
        script:
            SCRIPT

    if CFG["suite"] == "strategy":

        ruleorder: ingest_lm_eval > evaluate
