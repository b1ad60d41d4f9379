"""The strategy spec (cotscale.strategy): one set of defaults and checks for the config loader and the lm-eval model."""

from __future__ import annotations

import copy

import pytest
import yaml

from cotscale.config import ROOT, ConfigError, load_config
from cotscale.config import resolve_strategy


@pytest.fixture(scope="module")
def paper(root=ROOT):
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


COT = " Let's think step by step."  # the paper's zero-shot CoT cue (Kojima et al.)
#: what defines each paper strategy's prompts and decoding, written out by hand from config/config.yaml and the
#: paper (not from cotscale.strategy): (format, cue, answer cue, stop sequences, decoding, beams, samples, temperature)
PAPER_STRATEGIES = {
    "standard": ("loglikelihood", "", " The answer is:", [], "greedy", 1, 1, 0.0),
    "cot_generate": ("generate", COT, " The answer is:", [], "greedy", 1, 1, 0.0),
    "hybrid": ("hybrid", "", " The answer is:", ["\n"], "greedy", 1, 1, 0.0),
    "hybrid_cot": ("hybrid", COT, " The answer is:", ["\n"], "greedy", 1, 1, 0.0),
    "beam": ("hybrid", COT, " The answer is:", ["\n"], "beam", 4, 1, 0.0),
    "self_consistency": ("hybrid", COT, " The answer is:", ["\n"], "sample", 1, 5, 0.7),
}
FIELDS = ("format", "cue", "answer_cue", "until", "decoding", "num_beams", "samples", "temperature")


def test_a_strategy_name_on_the_cli_is_the_pipelines_strategy(paper):
    """`--model_args strategy=NAME` and the pipeline's strategies.NAME both give the paper's prompts and decoding
    (same cue, answer cue, stop sequences and decoding, hence the same prompts)."""
    config = load_config(paper)
    assert sorted(config["strategies"]) == sorted(PAPER_STRATEGIES)
    for name, expected in PAPER_STRATEGIES.items():
        for source in (name, config["strategies"][name]):
            resolved = resolve_strategy(source)
            assert tuple(resolved[f] for f in FIELDS) == expected, (name, type(source).__name__)


def test_an_empty_cot_cue_is_an_error_naming_the_key(paper):
    config = copy.deepcopy(paper)
    config["strategies"]["hybrid_cot"]["cot_cue"] = ""
    with pytest.raises(ConfigError, match=r"config key strategies\.hybrid_cot\.cot_cue: prompt: cot needs a non-empty"):
        load_config(config)
    config = copy.deepcopy(paper)
    config["cot_cue"] = ""
    with pytest.raises(ConfigError, match=r"strategies\.cot_generate\.cot_cue \(inherited from the top-level cot_cue\)"):
        load_config(config)


def test_the_config_cue_reaches_every_cot_strategy(paper):
    config = load_config({**paper, "cot_cue": " Think."})
    cues = {name: resolve_strategy(s)["cue"] for name, s in config["strategies"].items()}
    assert cues == {"standard": "", "cot_generate": " Think.", "hybrid": "", "hybrid_cot": " Think.",
                    "beam": " Think.", "self_consistency": " Think."}


def test_contradicting_decoding_settings_name_the_key(paper):
    config = copy.deepcopy(paper)
    config["strategies"]["beam"]["decoding"] = "greedy"
    with pytest.raises(ConfigError, match=r"strategies\.beam\.num_beams: num_beams > 1 needs decoding: beam"):
        load_config(config)
