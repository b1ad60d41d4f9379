# `snakemake --report report.html`: every output marked report() (figures in figures.smk, tables in aggregate.smk and
# analysis.smk) with its caption from workflow/report/, under this global description.


report: "../report/workflow.rst"
