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

# --- per-document outcomes (issue: every answer with its uncertainty) --------------------------------------------
#: results/tables/outcomes.parquet: one row per model revision × strategy × task × document (and budget of a
#: sweep), the value of the metric that enters `overall` for that document. Every interval is computed from it.
OUTCOME_COLUMNS = ("model", "strategy", "benchmark", "task", "doc_id", "budget_kind", "budget", "value")
#: interval columns follow one convention: `<quantity>_ci_low`, `<quantity>_ci_high`, and a `ci_method` column
CI_LOW, CI_HIGH, CI_METHOD = "_ci_low", "_ci_high", "ci_method"

# --- usage records (usage.jsonl.gz): fields added beside cotscale.usage.FIELDS ------------------------------------
#: generate records: no non-whitespace text before the first stop sequence / EOS (after the cue)
EMPTY_FIELD = "empty"
#: tokens the backend actually ran for a request (shared-prefix scoring); absent = prompt_tokens + generated_tokens
COMPUTED_TOKENS_FIELD = "computed_tokens"

# --- cost models (issue: inference cost as the hardware pays it) ------------------------------------------------
#: results/tables/models.csv: architecture facts per model revision (config.json, overridable per model entry)
MODEL_COLUMNS = ("model", "revision", "family", "N", "D", "layers", "d_model", "query_heads", "kv_heads", "head_dim",
                 "vocab_size", "total_params", "non_embedding_params", "tied_embeddings", "architecture_source")
#: the cost model every published number uses (2·N·generated tokens); the others are in cotscale.cost
DEFAULT_COST_MODEL = "paper"
#: results/tables/costs.csv: cost per request of each model × strategy × benchmark (and overall) × cost model
COST_COLUMNS = ("model", "revision", "family", "N", "strategy", "benchmark", "budget", "cost_model", "unit",
                "prompt_tokens_per_request", "generated_tokens_per_request", "cost_per_request",
                "paper_cost_per_request", "ratio_to_paper", "hardware", "batch_size", "token_unit", "priced_on",
                "modelled_seconds", "measured_seconds", "measured_over_modelled", "reason")
#: crossover.csv: one row per model × cost model (R* with the TEF baseline priced by the same cost model)
COST_MODEL_COLUMN = "cost_model"
