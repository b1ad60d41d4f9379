# `snakemake prefetch` on a host with internet: every configured model revision and task dataset into the HF cache,
# so that evaluation jobs on offline compute nodes (hf_offline: true) find them. Not an input of any rule: adding a
# model must not make every finished evaluation out of date.
from cotscale.prefetch import prefetch_targets


rule prefetch:
    output:
        "results/prefetch.json",
    log:
        "logs/prefetch.log",
    benchmark:
        rule_benchmark("prefetch")
    conda:
        "../../envs/evaluate-hf.yaml"
    params:
        targets=prefetch_targets(CFG),
    script:
        SCRIPT
