"""The data contract: where every output lives, which columns each table has and which fields each record has.

One source for these facts. The rules (through workflow/rules/common.smk), the Python package and benchmarks/ read
them from here; nothing else spells a path pattern or a column list of a shared table. Pure constants: importing this
module imports nothing heavy (the DAG build and table jobs import it).

Sections below are owned by concept; add to a section rather than re-spelling a name elsewhere.
"""

from __future__ import annotations

# --- paths (relative to the workflow's working directory) -------------------------------------------------------
#: one folder per evaluated (model, strategy, task): results.json, samples.jsonl.gz, usage.jsonl.gz
EVAL_DIR = "results/evals/{model}/{strategy}/{task}"
EVALS_ROOT = "results/evals"
#: request caches of running evaluations (cotscale.cache), beside and not inside the declared outputs
CACHE_ROOT = "results/cache"
TABLES_DIR = "results/tables"
STRATEGY_DIR = "results/tables/strategies/{strategy}"
PUBLISHED_DIR = "results/published"
FIGURES_DIR = "figures"
#: Snakemake's log and `benchmark:` file (wall seconds, max RSS) of an evaluation job, by the config's `suite:`
#: (`strategy`: one job per model revision × strategy; `model`: one per model revision). aggregate.py reads the
#: benchmark files back (cotscale.contract.path_fields recovers the model from one).
EVAL_LOG = {"strategy": "logs/evaluate/{model}/{strategy}.log", "model": "logs/evaluate/{model}.log"}
EVAL_BENCHMARK = {"strategy": "logs/benchmarks/evaluate/{model}/{strategy}.tsv",
                  "model": "logs/benchmarks/evaluate/{model}.tsv"}
#: the `benchmark:` file of any other rule (one job per rule, or per {name} / {strategy} / {figure} wildcard value)
RULE_BENCHMARK = "logs/benchmarks/{rule}.tsv"

# --- tables ------------------------------------------------------------------------------------------------------
#: the identity of an evaluated operating point: the first columns of scores/benchmarks/tokens/compute.csv, of
#: inference_scaling.csv and of the planner's points
ID_COLUMNS = ("model", "revision", "family", "N", "D", "strategy")

# --- per-document outcomes (issue: every answer with its uncertainty) --------------------------------------------
#: results/tables/outcomes.parquet: one row per model revision × strategy × task × document (and budget of a
#: sweep), the value of the metric that enters `overall` for that document. Every interval is computed from it.
#: generated_tokens / generate_requests: the document's generated tokens and generate requests (usage records; at a
#: sweep budget the tokens of that budget), so token means are resampled with the documents
OUTCOME_COLUMNS = ("model", "strategy", "benchmark", "task", "doc_id", "budget_kind", "budget", "value",
                   "generated_tokens", "generate_requests")
OUTCOMES_TABLE = "results/tables/outcomes.parquet"
#: one strategy's outcomes (rule aggregate_strategy), and the budget sweeps' (rule inference_scaling)
STRATEGY_OUTCOMES = "results/tables/strategies/{strategy}/outcomes.parquet"
SWEEP_OUTCOMES = "results/tables/sweep_outcomes.parquet"
#: interval columns follow one convention: `<quantity>_ci_low`, `<quantity>_ci_high`, and a `ci_method` column
CI_LOW, CI_HIGH, CI_METHOD = "_ci_low", "_ci_high", "ci_method"

# --- usage records (usage.jsonl.gz): fields added beside cotscale.usage.FIELDS ------------------------------------
#: generate records: no non-whitespace text before the first stop sequence / EOS (after the cue)
EMPTY_FIELD = "empty"
#: tokens the backend actually ran for a request (shared-prefix scoring); absent = prompt_tokens + generated_tokens
COMPUTED_TOKENS_FIELD = "computed_tokens"

# --- sample records (samples.jsonl.gz): fields cotscale.lm adds to lm-eval's, read back by cotscale.scaling ------
#: a generate-format document, one entry per response in lm-eval's ``resps`` order (and a hybrid document, one per
#: rationale): its generated tokens and its summed log-probability under the model (natural log)
GENERATED_TOKENS, SEQUENCE_LOGPROBS = "generated_tokens", "sequence_logprobs"
RESPONSE_FIELDS = (GENERATED_TOKENS, SEQUENCE_LOGPROBS)
#: a length sweep, one entry per budget (ascending): hybrid (rationales and choice log-likelihoods) and generate
#: format (the response cut at each budget, its answer extracted later by the task's filter)
BUDGETS, BUDGET_RATIONALES, BUDGET_GENERATED_TOKENS = "budgets", "budget_rationales", "budget_generated_tokens"
BUDGET_LOGLIKELIHOODS, BUDGET_RESPONSES = "budget_loglikelihoods", "budget_responses"
BUDGET_FIELDS = (BUDGETS, BUDGET_RATIONALES, BUDGET_GENERATED_TOKENS, BUDGET_LOGLIKELIHOODS, BUDGET_RESPONSES)
#: a hybrid document: per rationale, the log-likelihood of every choice after it
RATIONALE_LOGLIKELIHOODS = "rationale_loglikelihoods"

# --- cost models (issue: inference cost as the hardware pays it) ------------------------------------------------
#: results/tables/models.csv: architecture facts per model revision (config.json, overridable per model entry)
MODEL_COLUMNS = ("model", "revision", "family", "N", "D", "layers", "d_model", "query_heads", "kv_heads", "head_dim",
                 "vocab_size", "total_params", "non_embedding_params", "tied_embeddings", "architecture_source")
#: the cost model every published number uses (2·N·generated tokens); the others are in cotscale.cost
DEFAULT_COST_MODEL = "paper"
CROSSOVER_CLAIMED = "finite R* claimed"  # crossover.csv's verdict where the data support R* (cotscale.fits)


def claims_crossover(verdict) -> bool:
    """Whether a crossover.csv verdict claims its R*; a table without verdicts (older runs) claims every R*."""
    return not isinstance(verdict, str) or verdict == CROSSOVER_CLAIMED


#: results/tables/costs.csv: cost per request of each model × strategy × benchmark (and overall) × cost model
COST_COLUMNS = ("model", "revision", "family", "N", "strategy", "benchmark", "budget", "cost_model", "unit",
                "prompt_tokens_per_request", "generated_tokens_per_request", "cost_per_request",
                "paper_cost_per_request", "ratio_to_paper", "decode_ratio_to_paper", "hardware", "batch_size", "token_unit", "priced_on",
                "modelled_seconds", "measured_seconds", "measured_over_modelled", "reason")
#: crossover.csv: one row per model × cost model (R* with the TEF baseline priced by the same cost model)
COST_MODEL_COLUMN = "cost_model"


def path_fields(pattern: str, path: str) -> dict[str, str]:
    """The wildcard values of `path` under one of the patterns above ({model} may hold `/`: `key@revision/sub`).
    Raises ValueError naming both when the path does not have the pattern's shape."""
    import re

    text = str(path).replace("\\", "/")
    regex = "".join(f"(?P<{part[1:-1]}>{'.+' if part == '{model}' else '[^/]+'})" if part.startswith("{")
                    else re.escape(part) for part in re.split(r"(\{[a-z_]+\})", pattern))
    match = re.search(f"(?:^|/){regex}$", text)
    if match is None:
        raise ValueError(f"{path} is not a path of the form {pattern}")
    return match.groupdict()
