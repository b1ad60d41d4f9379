"""The inference-strategy spec: its defaults, validation and named strategies, in one place.

Read by the configuration loader (``cotscale.config.load_config`` fills and checks every ``strategies:`` entry here)
and by the lm-eval model (``cotscale.lm.CotscaleLM`` resolves the strategy it runs here), so a strategy means the same
thing in the pipeline and on lm-eval's command line. Named strategies (``--model_args strategy=hybrid_cot``) are the
entries of the paper configuration, config/config.yaml, not a second list.

Budget sweeps (operating points estimated from one run, no new generation): ``k: [...]`` with ``decoding: sample``
(each k <= ``samples``) and ``max_gen_toks: [...]`` with ``decoding: greedy`` — filled as ``max_gen_toks`` = the
largest budget (the one generated) and ``max_gen_toks_sweep`` = the sorted budgets; ``thinking_budget: [...]``
likewise fills ``thinking_budget`` and ``thinking_budget_sweep``.

Stop handling: ``stop_after_content`` (default false, the seed's behaviour) lets a stop sequence end a generation
only after its first non-whitespace text (cotscale.usage.stop_index), on both backends, so a model that opens with the
stop ("\\n" under ``until: ["\\n"]``) still writes its rationale.

Reasoning models: ``chat_template`` (prompts go through the model's own chat template, lm-eval's
apply_chat_template path), ``system_prompt``, ``thinking`` (passed to the template as ``enable_thinking``),
``think_end_token`` (None: the tokenizer's own, e.g. "</think>") and ``thinking_budget`` (budget forcing: the thinking
is cut at that many generated tokens, the end-of-thinking token and the answer cue are appended, and the answer is
generated after them; see cotscale.lm).

Light on purpose (no torch, no lm-eval): Snakemake imports it through the config loader when it parses the workflow.
"""

from __future__ import annotations

import codecs
import copy
import json
from typing import Any

DEFAULT_COT_CUE = " Let's think step by step."
DEFAULT_ANSWER_CUE = " The answer is:"
FORMATS = ("loglikelihood", "generate", "hybrid")
PROMPTS = ("plain", "cot")
DECODINGS = ("greedy", "beam", "sample")
# Keys a config entry may leave out; format, prompt and decoding it must give (the schema requires them).
STRATEGY_DEFAULTS: dict[str, Any] = {"num_beams": 1, "samples": 1, "temperature": 0.0, "max_gen_toks": 256,
                                     "until": [], "k": [], "max_gen_toks_sweep": [], "chat_template": False,
                                     "system_prompt": "", "thinking": False, "think_end_token": None,
                                     "thinking_budget": None, "thinking_budget_sweep": [],
                                     "stop_after_content": False}
STRATEGY_KEYS = ("format", "prompt", "decoding", *STRATEGY_DEFAULTS, "cot_cue", "answer_cue")
DEFAULT_THINK_END_TOKEN = "</think>"  # the default when the tokenizer has it as one token (Qwen3, DeepSeek-R1)


class StrategyError(ValueError):
    """A strategy key with a bad value; ``key`` names it so the config loader can say where it is."""

    def __init__(self, key: str, why: str, value: Any) -> None:
        self.key, self.why = key, why
        super().__init__(f"strategy key {key}: {why} (got {value!r})")


def fill_strategy(spec: dict[str, Any], cot_cue: str = DEFAULT_COT_CUE,
                  answer_cue: str = DEFAULT_ANSWER_CUE) -> dict[str, Any]:
    """A copy of a config-style entry with every default filled: the keys the schema lets it leave out, its
    ``cot_cue`` (the given top-level cue for ``prompt: cot``, "" for plain prompts) and ``answer_cue``."""
    out = copy.deepcopy(spec)
    for key in ("max_gen_toks", "thinking_budget"):
        budgets = out.get(key)
        if isinstance(budgets, list) and budgets and all(_positive_int(b) for b in budgets):
            # a length sweep: generate once at the largest budget, score every listed budget on its prefix
            out[key], out[f"{key}_sweep"] = max(budgets), sorted({int(b) for b in budgets})
    for key, value in STRATEGY_DEFAULTS.items():
        if out.get(key) is None:
            out[key] = copy.deepcopy(value)
    for key, value in (("format", "loglikelihood"), ("prompt", "plain"), ("decoding", "greedy")):
        if out.get(key) is None:
            out[key] = value
    if out.get("cot_cue") is None:
        out["cot_cue"] = cot_cue if out["prompt"] == "cot" else ""
    if out.get("answer_cue") is None:
        out["answer_cue"] = answer_cue
    return out


def _positive_int(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and int(x) == x and x >= 1


def check_strategy(s: dict[str, Any]) -> None:
    """Raise StrategyError for a filled spec whose values are bad alone or contradict each other."""
    for key, allowed in (("format", FORMATS), ("prompt", PROMPTS), ("decoding", DECODINGS)):
        if s[key] not in allowed:
            raise StrategyError(key, f"must be one of {', '.join(allowed)}", s[key])
    for key in ("max_gen_toks", "thinking_budget"):
        if isinstance(s[key], list):
            raise StrategyError(key, "a budget sweep must be a non-empty list of integers >= 1", s[key])
    for key in ("num_beams", "samples", "max_gen_toks"):
        if not _positive_int(s[key]):
            raise StrategyError(key, "must be an integer >= 1", s[key])
    for key in ("k", "max_gen_toks_sweep", "thinking_budget_sweep"):
        if not isinstance(s[key], list) or not all(_positive_int(x) for x in s[key]):
            raise StrategyError(key, "must be a list of integers >= 1", s[key])
    if s["k"] and s["decoding"] != "sample":
        raise StrategyError("k", f"a k sweep needs decoding: sample (decoding is {s['decoding']})", s["k"])
    if s["k"] and max(s["k"]) > s["samples"]:
        raise StrategyError("k", f"every k must be <= samples ({s['samples']}): the sweep reuses the samples drawn",
                            s["k"])
    if s["max_gen_toks_sweep"] and s["decoding"] != "greedy":
        raise StrategyError("max_gen_toks", f"a list of budgets needs decoding: greedy (decoding is "
                            f"{s['decoding']}): only a greedy rationale cut at b tokens is the one generated at b",
                            s["max_gen_toks_sweep"])
    if s["max_gen_toks_sweep"] and max(s["max_gen_toks_sweep"]) != s["max_gen_toks"]:
        raise StrategyError("max_gen_toks", f"the largest budget of the sweep must be the generation budget "
                            f"max_gen_toks ({s['max_gen_toks']})", s["max_gen_toks_sweep"])
    if isinstance(s["temperature"], bool) or not isinstance(s["temperature"], (int, float)) or s["temperature"] < 0:
        raise StrategyError("temperature", "must be a number >= 0", s["temperature"])
    if s["decoding"] == "sample" and s["temperature"] <= 0:
        raise StrategyError("temperature", "decoding: sample needs temperature > 0, e.g. 0.7", s["temperature"])
    if s["samples"] > 1 and s["decoding"] != "sample":
        raise StrategyError("samples", f"samples > 1 needs decoding: sample (decoding is {s['decoding']})",
                            s["samples"])
    if s["num_beams"] > 1 and s["decoding"] != "beam":
        raise StrategyError("num_beams", f"num_beams > 1 needs decoding: beam (decoding is {s['decoding']})",
                            s["num_beams"])
    if not isinstance(s["until"], list) or not all(isinstance(x, str) for x in s["until"]):
        raise StrategyError("until", "must be a list of strings", s["until"])
    for key in ("cot_cue", "answer_cue"):
        if not isinstance(s[key], str):
            raise StrategyError(key, "must be a string", s[key])
    if not isinstance(s["stop_after_content"], bool):
        raise StrategyError("stop_after_content", "must be true or false", s["stop_after_content"])
    if s["stop_after_content"] and s["format"] == "loglikelihood":
        raise StrategyError("stop_after_content", "needs format: generate or hybrid (it changes where a generation "
                            "stops; format: loglikelihood generates only as the task asks)", s["stop_after_content"])
    if s["prompt"] == "cot" and not s["cot_cue"]:
        raise StrategyError("cot_cue", "prompt: cot needs a non-empty cot_cue (the text appended to every prompt; "
                            f"the default is {DEFAULT_COT_CUE!r})", s["cot_cue"])
    _check_reasoning(s)


def _check_reasoning(s: dict[str, Any]) -> None:
    """The reasoning keys: each alone, and what thinking needs (a chat template, a generation, greedy decoding)."""
    for key in ("chat_template", "thinking"):
        if not isinstance(s[key], bool):
            raise StrategyError(key, "must be true or false", s[key])
    if not isinstance(s["system_prompt"], str):
        raise StrategyError("system_prompt", "must be a string", s["system_prompt"])
    if s["system_prompt"] and not s["chat_template"]:
        raise StrategyError("system_prompt", "a system prompt needs chat_template: true (it is a chat message)",
                            s["system_prompt"])
    if s["think_end_token"] is not None and (not isinstance(s["think_end_token"], str) or not s["think_end_token"]):
        raise StrategyError("think_end_token", "must be a non-empty string, e.g. \"</think>\" (leave it out to take "
                            "the tokenizer's own)", s["think_end_token"])
    if s["thinking_budget"] is not None and not _positive_int(s["thinking_budget"]):
        raise StrategyError("thinking_budget", "must be an integer >= 1 or a list of them", s["thinking_budget"])
    if not s["thinking"]:
        for key in ("think_end_token", "thinking_budget"):
            if s[key] is not None:
                raise StrategyError(key, "needs thinking: true", s[key])
        return
    if not s["chat_template"]:
        raise StrategyError("thinking", "thinking: true needs chat_template: true (thinking is switched on through "
                            "the model's chat template, as enable_thinking)", s["thinking"])
    if s["format"] == "loglikelihood":
        raise StrategyError("thinking", "thinking: true needs format: generate or hybrid (the thinking is generated)",
                            s["thinking"])
    if s["decoding"] != "greedy":
        raise StrategyError("thinking", f"thinking: true runs with decoding: greedy only (decoding is "
                            f"{s['decoding']})", s["thinking"])
    if s["max_gen_toks_sweep"] or s["k"]:
        raise StrategyError("thinking", "a thinking strategy sweeps thinking_budget only, not max_gen_toks or k",
                            s["max_gen_toks_sweep"] or s["k"])
    if s["thinking_budget_sweep"] and max(s["thinking_budget_sweep"]) != s["thinking_budget"]:
        raise StrategyError("thinking_budget", f"the largest budget of the sweep must be thinking_budget "
                            f"({s['thinking_budget']})", s["thinking_budget_sweep"])


def budget_sweep(s: dict[str, Any]) -> tuple[str, list[int]] | None:
    """A filled strategy's budget sweep (scored from one run, cotscale.scaling): ("k", the k values) for
    self-consistency, ("max_gen_toks", the budgets) for greedy rationale lengths, ("thinking_budget", the budgets)
    for budget-forced thinking, None without one."""
    if s.get("k"):
        return "k", sorted(int(k) for k in s["k"])
    if s.get("max_gen_toks_sweep"):
        return "max_gen_toks", [int(b) for b in s["max_gen_toks_sweep"]]
    if s.get("thinking_budget_sweep"):
        return "thinking_budget", [int(b) for b in s["thinking_budget_sweep"]]
    return None


def chat_arguments(s: dict[str, Any]) -> dict[str, Any]:
    """lm-eval ``simple_evaluate`` arguments of a filled strategy: with ``chat_template`` lm-eval renders every prompt
    (few-shot examples as turns) through the model's chat template, with ``system_prompt`` as the system message."""
    if not s.get("chat_template"):
        return {}
    return {"apply_chat_template": True, "system_instruction": s.get("system_prompt") or None,
            "fewshot_as_multiturn": True}


def resolve_strategy(strategy: dict | str | None = None, **overrides: Any) -> dict[str, Any]:
    """Complete and validate a strategy for the lm-eval model; returns the keys of STRATEGY_KEYS plus ``cue`` (the
    text appended to prompts: ``cot_cue`` for ``prompt: cot``, else "").

    ``strategy`` is a dict (extra keys such as ``name``, ``variant`` or ``models`` are ignored) or a JSON object
    string (a strategy *name* of config/config.yaml: :func:`cotscale.config.resolve_strategy`); ``overrides`` (flat model args, e.g. from a CLI arg string) win
    over it. ``until`` may be one string; backslash escapes in it (``\\n`` from a CLI arg string) are decoded.
    """
    if strategy is None:
        spec: dict[str, Any] = {}
    elif isinstance(strategy, str):
        text = strategy.strip()
        if not text.startswith("{"):
            raise StrategyError("strategy", "not a JSON object (resolve a strategy name of the configuration with "
                                "cotscale.config.resolve_strategy)", strategy)
        spec = json.loads(text)
    elif isinstance(strategy, dict):
        spec = dict(strategy)
    else:
        raise TypeError(f"strategy must be a dict, a strategy name or JSON, not {type(strategy).__name__}")
    spec.update({k: v for k, v in overrides.items() if v is not None})
    until = spec.get("until")
    if isinstance(until, str):
        spec["until"] = [codecs.decode(until, "unicode_escape") if "\\" in until else until]
    elif isinstance(until, tuple):
        spec["until"] = list(until)
    out = fill_strategy({key: spec.get(key) for key in STRATEGY_KEYS})
    check_strategy(out)
    for key in ("num_beams", "samples", "max_gen_toks"):
        out[key] = int(out[key])
    out["temperature"] = float(out["temperature"])
    out["k"] = sorted({int(k) for k in out["k"]})
    out["max_gen_toks_sweep"] = [int(b) for b in out["max_gen_toks_sweep"]]
    out["thinking_budget_sweep"] = [int(b) for b in out["thinking_budget_sweep"]]
    if out["thinking_budget"] is not None:
        out["thinking_budget"] = int(out["thinking_budget"])
    out["until"] = [x for x in out["until"] if x]
    out["cue"] = out["cot_cue"] if out["prompt"] == "cot" else ""
    return out
