"""The inference-strategy spec: its defaults, validation and named strategies, in one place.

Read by the configuration loader (``cotscale.config.load_config`` fills and checks every ``strategies:`` entry here)
and by the lm-eval model (``cotscale.lm.CotscaleLM`` resolves the strategy it runs here), so a strategy means the same
thing in the pipeline and on lm-eval's command line. Named strategies (``--model_args strategy=hybrid_cot``) are the
entries of the paper configuration, config/config.yaml, not a second list.

Budget sweeps (operating points estimated from one run, no new generation): ``k: [...]`` with ``decoding: sample``
(each k <= ``samples``) and ``max_gen_toks: [...]`` with ``decoding: greedy`` — filled as ``max_gen_toks`` = the
largest budget (the one generated) and ``max_gen_toks_sweep`` = the sorted budgets.

Light on purpose (no torch, no lm-eval): Snakemake imports it through the config loader when it parses the workflow.
"""

from __future__ import annotations

import codecs
import copy
import json
from pathlib import Path
from typing import Any

DEFAULT_COT_CUE = " Let's think step by step."
DEFAULT_ANSWER_CUE = " The answer is:"
FORMATS = ("loglikelihood", "generate", "hybrid")
PROMPTS = ("plain", "cot")
DECODINGS = ("greedy", "beam", "sample")
# Keys a config entry may leave out; format, prompt and decoding it must give (the schema requires them).
STRATEGY_DEFAULTS: dict[str, Any] = {"num_beams": 1, "samples": 1, "temperature": 0.0, "max_gen_toks": 256,
                                     "until": [], "k": [], "max_gen_toks_sweep": []}
STRATEGY_KEYS = ("format", "prompt", "decoding", *STRATEGY_DEFAULTS, "cot_cue", "answer_cue")
PAPER_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"


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
    budgets = out.get("max_gen_toks")
    if isinstance(budgets, list) and budgets and all(_positive_int(b) for b in budgets):
        # a length sweep: generate once at the largest budget, score every listed budget on its prefix
        out["max_gen_toks"], out["max_gen_toks_sweep"] = max(budgets), sorted({int(b) for b in budgets})
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
    if isinstance(s["max_gen_toks"], list):
        raise StrategyError("max_gen_toks", "a budget sweep must be a non-empty list of integers >= 1",
                            s["max_gen_toks"])
    for key in ("num_beams", "samples", "max_gen_toks"):
        if not _positive_int(s[key]):
            raise StrategyError(key, "must be an integer >= 1", s[key])
    for key in ("k", "max_gen_toks_sweep"):
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
    if s["prompt"] == "cot" and not s["cot_cue"]:
        raise StrategyError("cot_cue", "prompt: cot needs a non-empty cot_cue (the text appended to every prompt; "
                            f"the default is {DEFAULT_COT_CUE!r})", s["cot_cue"])


def budget_sweep(s: dict[str, Any]) -> tuple[str, list[int]] | None:
    """A filled strategy's budget sweep (scored from one run, cotscale.scaling): ("k", the k values) for
    self-consistency, ("max_gen_toks", the budgets) for greedy rationale lengths, None without one."""
    if s.get("k"):
        return "k", sorted(int(k) for k in s["k"])
    if s.get("max_gen_toks_sweep"):
        return "max_gen_toks", [int(b) for b in s["max_gen_toks_sweep"]]
    return None


def named_strategies() -> dict[str, dict[str, Any]]:
    """The strategies of the paper configuration (config/config.yaml), filled with its cues: what the pipeline runs
    under each name."""
    from cotscale.config import read_yaml  # the config loader imports this module

    raw = read_yaml(PAPER_CONFIG)
    cot_cue, answer_cue = raw.get("cot_cue", DEFAULT_COT_CUE), raw.get("answer_cue", DEFAULT_ANSWER_CUE)
    return {name: fill_strategy(spec, cot_cue, answer_cue) for name, spec in raw["strategies"].items()}


def resolve_strategy(strategy: dict | str | None = None, **overrides: Any) -> dict[str, Any]:
    """Complete and validate a strategy for the lm-eval model; returns the keys of STRATEGY_KEYS plus ``cue`` (the
    text appended to prompts: ``cot_cue`` for ``prompt: cot``, else "").

    ``strategy`` is a dict (extra keys such as ``name``, ``variant`` or ``models`` are ignored), a JSON object string
    or the name of a strategy of config/config.yaml; ``overrides`` (flat model args, e.g. from a CLI arg string) win
    over it. ``until`` may be one string; backslash escapes in it (``\\n`` from a CLI arg string) are decoded.
    """
    if strategy is None:
        spec: dict[str, Any] = {}
    elif isinstance(strategy, str):
        text = strategy.strip()
        if text.startswith("{"):
            spec = json.loads(text)
        else:
            named = named_strategies()
            if text not in named:
                raise StrategyError("strategy", f"not a JSON object nor a strategy of {PAPER_CONFIG} "
                                    f"({', '.join(named)})", strategy)
            spec = named[text]
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
    out["until"] = [x for x in out["until"] if x]
    out["cue"] = out["cot_cue"] if out["prompt"] == "cot" else ""
    return out
