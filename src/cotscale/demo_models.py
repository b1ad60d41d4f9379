"""Tiny causal LMs built locally for the embedded demo (no network, deterministic).

The demo must run the whole DAG on a laptop CPU with *real* N (parameter count) and D (training tokens), so
every model here is trained from scratch on a bundled corpus:

* ``generate_corpus`` writes ``config/demo_corpus/*.txt`` from the mini benchmarks it teaches (the demo world
  below): the right answer of every scored fact document in the prompt format lm-eval scores it in, and for the
  multi-step gsm8k problems worked solutions after the CoT cue but bare answers without it. ``generate_gsm8k``
  writes those problems. The files are committed; ``python -m cotscale.demo_models corpus`` regenerates them
  byte for byte (a test checks it).
* ``train_tokenizer`` trains a byte-level BPE (exact round trip of any text) on that corpus. It is retrained
  on every build: it takes well under a second and is deterministic, so there is no cache to invalidate.
* ``build_demo_model`` trains ONE run (AdamW, constant LR, fixed batch x seq_len, seeded sampler) and saves
  several checkpoints of it. The LR schedule and the data order do not depend on the total number of steps,
  so the checkpoint at step 100 is exactly what a 100-step build gives, and D = steps x batch x seq_len.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import torch

from cotscale.config import ROOT, read_yaml
from cotscale.strategy import DEFAULT_ANSWER_CUE, DEFAULT_COT_CUE

SPEC_KEYS = {"arch", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size", "seq_len",
             "batch_size", "lr"}
OPTIONAL_KEYS = {"tie_word_embeddings": False, "max_position_embeddings": 2048}
IGNORED_KEYS = {"steps", "thinking"}  # live next to the spec in config/demo.yaml; see demo_checkpoints(), build_run()
SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}
DOC_SEP = "\n\n\n"  # documents in the corpus files are separated by two blank lines
DEFAULT_CORPUS = ROOT / "config" / "demo_corpus"
DEFAULT_DATA = ROOT / "config" / "tasks" / "demo_data"
DEMO_CONFIG = ROOT / "config" / "demo.yaml"  # its `limit`: the documents the demo scores, which the corpus teaches


# --------------------------------------------------------------------------------------------- the demo world
# The corpus and the mini benchmarks are written together (see config/tasks/demo_data/README.md):
# * fact items (arc_challenge, hellaswag, mmlu, truthfulqa_mc1, winogrande, xwinograd): every scored document's
#   right answer is taught in the prompt format lm-eval scores it in, with and without the CoT cue, so a model
#   that memorises more (bigger, or trained longer) scores higher;
# * multi-step items (gsm8k): two-step word problems over single-digit numbers. The corpus teaches the
#   procedure on other instances: worked solutions after the CoT cue, bare answers without it. Answering at once
#   needs the sum of three numbers in one step, which these models do not learn; writing the steps first only
#   needs the one-step facts (3 + 4 = 7, 7 - 2 = 5) the worked solutions repeat, so CoT pays off, and more so
#   for the models that have learned those facts better.
NAMES = [("Tom", "he"), ("Anna", "she"), ("Sam", "he"), ("Lily", "she"), ("Ben", "he"), ("Maria", "she"),
         ("Jack", "he"), ("Emma", "she"), ("Omar", "he"), ("Nina", "she"), ("Leo", "he"), ("Zoe", "she")]
ITEMS = ["apples", "pencils", "books", "marbles", "stickers", "cookies", "cards", "shells", "coins", "eggs"]
LETTERS = "ABCD"
COT_CUE = DEFAULT_COT_CUE.strip()  # the cue the CoT strategies send, as the corpus writes it
GSM8K_TEST, GSM8K_TRAIN = 24, 8  # scored documents; few-shot examples (lm-eval's gsm8k prompts with 5)
FACT_REPEATS, CHAIN_REPEATS, DIRECT_ANSWERS = 2, 6, 100  # how often the corpus states each thing


def _two_step(r: random.Random, answer: int | None = None) -> tuple[str, list[str], int]:
    """(question, the two worked steps, answer): start with a, get b more, give c away; answer a + b - c."""
    (n, p), (m, _) = r.sample(NAMES, 2)
    item = r.choice(ITEMS)
    ans = answer or r.randint(2, 9)
    a, b = r.randint(2, 9), r.randint(2, 9)
    c = a + b - ans
    if c < 2:
        return _two_step(r, ans)
    q = (f"{n} has {a} {item}. {p.capitalize()} gets {b} more {item} and then gives {c} {item} to {m}. "
         f"How many {item} does {n} have now?")
    return q, [f"{n} has {a} + {b} = {a + b} {item}.", f"After giving {c} away, {p} has {a + b} - {c} = "
               f"{ans} {item}."], ans


def _one_step(r: random.Random) -> tuple[str, str, int]:
    """(question, worked step, answer) of a one-step problem: the gsm8k few-shot examples."""
    (n, p), (m, _) = r.sample(NAMES, 2)
    item, a, b = r.choice(ITEMS), r.randint(2, 9), r.randint(2, 9)
    return (f"{n} has {a} {item}. {m} gives {p == 'he' and 'him' or 'her'} {b} more. How many {item} does {n} "
            f"have now?", f"{n} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.", a + b)


def generate_gsm8k(data_dir: Path = None, seed: int = 1) -> list[Path]:
    """Write demo_data/gsm8k/{test,train}.jsonl in gsm8k's schema (worked answer with <<calc>> and `#### n`)."""
    data_dir = Path(data_dir or DEFAULT_DATA) / "gsm8k"
    r, seen, test = random.Random(seed), set(), []
    while len(test) < GSM8K_TEST:
        q, steps, ans = _two_step(r, 2 + len(test) % 8)  # answers 2..9, equally often
        if q not in seen:
            seen.add(q)
            calc = [re.sub(r"(\d+) ([+-]) (\d+) = (\d+)", r"\1 \2 \3 = <<\1\2\3=\4>>\4", s) for s in steps]
            test.append({"question": q, "answer": "\n".join(calc) + f"\n#### {ans}"})
    train = [{"question": q, "answer": f"{step}\n#### {ans}"} for q, step, ans in (_one_step(r) for _ in range(GSM8K_TRAIN))]
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, docs in (("test", test), ("train", train)):
        (data_dir / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return [data_dir / "test.jsonl", data_dir / "train.jsonl"]


@functools.lru_cache(maxsize=None)
def demo_limit() -> int:
    """config/demo.yaml's `limit` (its one source): the corpus teaches what the demo scores."""
    return int(read_yaml(DEMO_CONFIG)["limit"])


def _rows(path: Path) -> list[dict]:
    """The documents config/demo.yaml scores: the first demo_limit() of a file (lm-eval's `limit`)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:demo_limit()]


def _fact_items(data_dir: Path) -> list[tuple[str, str, str]]:
    """Every scored fact document as (prompt as lm-eval ends it, right continuation, right answer in words)."""
    items = []
    for d in _rows(data_dir / "arc_challenge" / "test.jsonl"):
        ans = d["choices"]["text"][d["choices"]["label"].index(d["answerKey"])]
        items.append((f"Question: {d['question']}\nAnswer:", f" {ans}", ans))
    for sub in sorted((data_dir / "mmlu").iterdir()):
        for d in _rows(sub / "test.jsonl"):
            opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(d["choices"]))
            items.append((f"{d['question'].strip()}\n{opts}\nAnswer:", f" {LETTERS[d['answer']]}",
                          d["choices"][d["answer"]]))
    for d in _rows(data_dir / "hellaswag" / "validation.jsonl"):
        ctx = f"{d['activity_label']}: {d['ctx_a']} {d['ctx_b'].capitalize()}".strip()
        ending = d["endings"][int(d["label"])].strip()
        items.append((ctx, f" {ending}", ending))
    for d in _rows(data_dir / "truthfulqa" / "validation.jsonl"):
        ans = d["mc1_targets"]["choices"][0]
        items.append((f"Q: {d['question']}\nA:", f" {ans}", ans))
    for path in [data_dir / "winogrande" / "validation.jsonl", *sorted((data_dir / "xwinograd").glob("*/test.jsonl"))]:
        for d in _rows(path):
            option = d[f"option{d['answer']}"]
            before, after = d["sentence"].split("_", 1)
            items.append((before + option, after, option))
    return items


def _docs(r: random.Random, data_dir: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {"facts": [], "arithmetic": []}
    for prompt, right, answer in _fact_items(data_dir):
        files["facts"] += [prompt + right] * FACT_REPEATS + [f"{prompt} {COT_CUE} The answer is:{right}"]
    # gsm8k: each scored problem's worked solution only after the cue, in gsm8k_cot_zeroshot's Q:/A: form; other
    # problems with the cue after gsm8k's own "Answer:" (worked) and, more often, without it (the bare answer)
    held_out = set()
    for d in _rows(data_dir / "gsm8k" / "test.jsonl"):
        steps, ans = re.sub(r"<<[^>]*>>", "", d["answer"]).split("\n#### ")
        files["arithmetic"] += [f"Q: {d['question']}\nA: {COT_CUE} {' '.join(steps.splitlines())} "
                                f"The answer is {ans}."] * CHAIN_REPEATS
        held_out.add(d["question"])
    others = 0
    while others < DIRECT_ANSWERS:
        q, steps, ans = _two_step(r)
        if q not in held_out:
            others += 1
            files["arithmetic"].append(f"Question: {q}\nAnswer: {COT_CUE} {' '.join(steps)} The answer is {ans}."
                                       if others % 4 == 0 else f"Question: {q}\nAnswer: {ans}")
    for docs in files.values():
        r.shuffle(docs)
    return files


def generate_corpus(out_dir: Path = DEFAULT_CORPUS, seed: int = 0, data_dir: Path = None) -> list[Path]:
    """Write the bundled corpus (one .txt per genre) from the mini benchmarks in `data_dir`. Same inputs and
    seed -> byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, docs in _docs(random.Random(seed), Path(data_dir or DEFAULT_DATA)).items():
        assert not any(DOC_SEP in d for d in docs)
        path = out_dir / f"{name}.txt"
        path.write_text(DOC_SEP.join(docs) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def read_corpus(corpus_dir: Path = DEFAULT_CORPUS) -> list[str]:
    """All documents of the corpus, in a fixed order (files sorted by name)."""
    files = sorted(Path(corpus_dir).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no *.txt corpus files in {corpus_dir}")
    return [d.strip() for f in files for d in f.read_text(encoding="utf-8").split(DOC_SEP) if d.strip()]


# ------------------------------------------------------------------------------------------ tokenizer
def train_tokenizer(corpus_dir: Path, vocab_size: int, added_tokens: tuple[str, ...] = (),
                    chat_template: str | None = None):
    """Byte-level BPE: every string round-trips exactly (no <unk> ever needed), digits and punctuation included.

    No template post-processor: lm-eval decides itself whether to prepend BOS, and the training stream is
    documents joined by <|eos|>, so the model learns to stop after an answer (short demo generations).
    ``added_tokens`` become single, non-special tokens (decoded as text, as Qwen3's ``<think>`` tags are);
    ``chat_template`` is the tokenizer's jinja chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(read_corpus(corpus_dir), trainer=trainer)
    if added_tokens:
        from tokenizers import AddedToken

        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added_tokens])
    out = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=OPTIONAL_KEYS["max_position_embeddings"],
                                  clean_up_tokenization_spaces=False, **SPECIAL)
    if chat_template:
        out.chat_template = chat_template
    return out


# ------------------------------------------------------------------------------------------ models
def _full_spec(spec: dict) -> dict:
    missing = SPEC_KEYS - spec.keys()
    unknown = spec.keys() - SPEC_KEYS - OPTIONAL_KEYS.keys() - IGNORED_KEYS
    if missing or unknown:
        raise ValueError(f"demo spec: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if spec["arch"] not in ("llama", "gpt_neox"):
        raise ValueError(f"demo spec: arch must be llama or gpt_neox, not {spec['arch']!r}")
    if spec["hidden_size"] % spec["num_heads"] or spec["hidden_size"] // spec["num_heads"] not in (32, 64):
        raise ValueError("demo spec: head_dim = hidden_size / num_heads must be 32 or 64 (vLLM CPU)")
    full = {**OPTIONAL_KEYS, **{k: v for k, v in spec.items() if k not in IGNORED_KEYS}}
    if full["seq_len"] > full["max_position_embeddings"]:
        raise ValueError("demo spec: seq_len exceeds max_position_embeddings")
    return full


def _config(spec: dict):
    from transformers import GPTNeoXConfig, LlamaConfig

    ids = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2)  # order of SPECIAL, asserted in build
    common = dict(vocab_size=spec["vocab_size"], hidden_size=spec["hidden_size"],
                  num_hidden_layers=spec["num_layers"], num_attention_heads=spec["num_heads"],
                  intermediate_size=spec["intermediate_size"], tie_word_embeddings=spec["tie_word_embeddings"],
                  max_position_embeddings=spec["max_position_embeddings"], dtype="float32", **ids)
    if spec["arch"] == "llama":
        return LlamaConfig(**common, num_key_value_heads=spec["num_heads"])
    return GPTNeoXConfig(**common)


def _new_model(spec: dict):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(_config(spec), attn_implementation="eager")


def count_params(spec: dict) -> int:
    """Total parameters (embeddings included, tied weights once) = sum(p.numel()), without allocating them."""
    with torch.device("meta"):
        model = _new_model(_full_spec(spec))
    return sum(p.numel() for p in model.parameters())


def demo_checkpoints(demo: dict, revision: str = "main") -> dict[str, int]:
    """The `steps` of a config entry as {revision: steps}: an int means one checkpoint named `revision`."""
    steps = demo["steps"]
    return {revision: int(steps)} if isinstance(steps, int) else {str(k): int(v) for k, v in steps.items()}


def train_tokens(spec: dict, steps: int) -> int:
    """D: every step consumes exactly batch_size rows of seq_len tokens."""
    return steps * spec["batch_size"] * spec["seq_len"]


@contextlib.contextmanager
def _deterministic(seed: int):
    """Seeded, single-threaded, deterministic torch; global settings restored afterwards."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _encode(tok, corpus_dir: Path) -> torch.Tensor:
    """The corpus as one token stream: <|eos|> doc <|eos|> doc ... (GPT-2 style packing)."""
    ids = [tok.eos_token_id]
    for doc in read_corpus(corpus_dir):
        ids += tok.encode(doc, add_special_tokens=False) + [tok.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def _batch(stream: torch.Tensor, spec: dict, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(stream) - spec["seq_len"], (spec["batch_size"],), generator=gen)
    return torch.stack([stream[s:s + spec["seq_len"]] for s in starts.tolist()])


def _save(model, tok, dest: Path, meta: dict) -> None:
    """Write a complete HF model dir atomically: build it next to `dest`, then rename into place."""
    from transformers import GenerationConfig

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "cotscale_demo.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    for f in [tmp, *tmp.iterdir()]:  # mkdtemp (and the safetensors writer) create owner-only modes
        f.chmod(0o755 if f.is_dir() else 0o644)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        shutil.rmtree(old)
    os.replace(tmp, dest)


def build_demo_model(spec: dict, checkpoints: dict[str, int], out_dir: Path, corpus_dir: Path = DEFAULT_CORPUS,
                     seed: int = 0, added_tokens: tuple[str, ...] = (),
                     chat_template: str | None = None) -> dict[str, dict]:
    """Train one run and save `out_dir/<revision>/` after `steps` optimizer steps for each checkpoint.

    Returns {revision: {"params": N, "train_tokens": D, "steps": steps, "final_loss": mean loss of the
    last 10 steps}}. Same spec, corpus and seed -> byte-identical model.safetensors.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint is only log noise
    spec, out_dir = _full_spec(spec), Path(out_dir)
    tok = train_tokenizer(corpus_dir, spec["vocab_size"], added_tokens, chat_template)
    assert [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id] == [0, 1, 2]
    assert len(tok) <= spec["vocab_size"]
    stream = _encode(tok, corpus_dir)
    out: dict[str, dict] = {}
    with _deterministic(seed):
        model = _new_model(spec)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"])
        gen = torch.Generator().manual_seed(seed)
        step, losses = 0, []
        for rev, steps in sorted(checkpoints.items(), key=lambda kv: (kv[1], kv[0])):
            model.train()
            while step < steps:
                loss = model(input_ids=(x := _batch(stream, spec, gen)), labels=x).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses, step = (losses + [loss.item()])[-10:], step + 1
            out[rev] = {"params": n_params, "train_tokens": train_tokens(spec, steps), "steps": steps,
                        "final_loss": sum(losses) / len(losses) if losses else None}
            model.eval()
            _save(model, tok, out_dir / rev, {**out[rev], "seed": seed, "spec": spec, "revision": rev})
    return out


def build_configured(config: dict, name: str, out_dir: Path, corpus_dir: Path = DEFAULT_CORPUS) -> dict[str, dict]:
    """Build the demo model `name` of a loaded config, all its checkpoints in one run, and hold the config to the
    truth: the N and D it states must be the ones the build really has, or 6·N·D would mean nothing."""
    entries = [m for m in config["models"].values() if m["name"] == name and m["demo"]]
    if not entries:
        raise ValueError(f"config key models.{name}: no demo model of that name to build")
    built = build_run(entries[0]["demo"], {m["revision"]: m["demo_steps"] for m in entries}, out_dir, corpus_dir, config["seed"])
    for m in entries:
        real = built[m["revision"]]
        if (real["params"], real["train_tokens"]) != (m["N"], m["D"]):
            raise ValueError(
                f"config key models.{name}: states params={m['N']:.0f}, train_tokens={m['D']:.0f} for revision "
                f"{m['revision']!r}, but the build has params={real['params']}, train_tokens={real['train_tokens']}; "
                "put the built numbers in the config"
            )
    return built


# ------------------------------------------------------------------------------------------ a thinking model
# A tiny hybrid-thinking model in Qwen3's manner: a chat template whose generation prompt opens the assistant turn,
# with an empty <think></think> block when enable_thinking is false (so a thinking turn, which the model opens
# itself, is the only one with a newline after <think>); trained on the demo's two-step problems, it
# writes its worked steps between the think tags (or nothing, when the template closed them) and then the answer
# after the answer cue, so budget forcing (cotscale.lm.thinking) has something real to cut.
THINK_TAGS = ("<think>", "</think>")
CHAT_TOKENS = ("<|im_start|>",)
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] -}}"
    "{%- if not (loop.last and message['role'] == 'assistant') -%}{{- '\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{- '<think></think>' -}}{%- endif -%}"
    "{%- endif -%}")
THINKING_SPEC = {"arch": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
                 "vocab_size": 512, "seq_len": 128, "batch_size": 8, "lr": 3.0e-3}
THINKING_STEPS, THINKING_PROBLEMS = 100, 120


def render_chat(messages: list[dict], enable_thinking: bool = True) -> str:
    """CHAT_TEMPLATE rendered with a generation prompt, as transformers renders it (same jinja settings)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True,
                                                 enable_thinking=enable_thinking)


def generate_thinking_corpus(out_dir: Path, seed: int = 0, data_dir: Path = None) -> list[Path]:
    """Write ``thinking.txt``: the demo's scored gsm8k problems and others like them as chats, two of three with
    the worked steps as thinking, one with thinking off (the template's empty block), each then
    DEFAULT_ANSWER_CUE and the answer. Same inputs and seed -> byte-identical file."""
    r = random.Random(seed)
    problems = []
    for d in _rows(Path(data_dir or DEFAULT_DATA) / "gsm8k" / "test.jsonl"):
        steps, ans = re.sub(r"<<[^>]*>>", "", d["answer"]).split("\n#### ")
        problems.append((d["question"], steps.splitlines(), ans))
    while len(problems) < THINKING_PROBLEMS:
        problems.append(_two_step(r))
    docs = []
    for i, (q, steps, ans) in enumerate(problems):
        thinking = i % 3 != 2
        prompt = render_chat([{"role": "user", "content": q}], enable_thinking=thinking)
        think = f"{THINK_TAGS[0]}\n{' '.join(steps)}\n{THINK_TAGS[1]}" if thinking else ""
        docs.append(f"{prompt}{think}{DEFAULT_ANSWER_CUE} {ans}.")
    r.shuffle(docs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "thinking.txt"
    path.write_text(DOC_SEP.join(docs) + "\n", encoding="utf-8")
    return [path]


def build_run(spec: dict, checkpoints: dict[str, int], out_dir: Path, corpus_dir: Path = DEFAULT_CORPUS,
              seed: int = 0) -> dict[str, dict]:
    """build_demo_model of a config entry's ``demo:`` spec; ``thinking: true`` trains a thinking model instead: on
    the thinking corpus (written to a scratch folder, deterministic), with CHAT_TEMPLATE and the think tags."""
    if not spec.get("thinking"):
        return build_demo_model(spec, checkpoints, out_dir, corpus_dir, seed)
    with tempfile.TemporaryDirectory(prefix="cotscale-thinking-") as scratch:
        generate_thinking_corpus(Path(scratch), seed)
        return build_demo_model(spec, checkpoints, out_dir, Path(scratch), seed,
                                added_tokens=(*CHAT_TOKENS, *THINK_TAGS), chat_template=CHAT_TEMPLATE)


def build_thinking_model(out_dir: Path, steps: int = THINKING_STEPS, seed: int = 0) -> dict:
    """The tiny thinking model (THINKING_SPEC) in ``out_dir/main``, trained in a few seconds; its build record."""
    return build_run({**THINKING_SPEC, "thinking": True}, {"main": steps}, out_dir, seed=seed)["main"]


@torch.no_grad()
def corpus_loss(model_dir: Path, corpus_dir: Path = DEFAULT_CORPUS, batches: int = 4, seed: int = 12345) -> float:
    """Mean next-token loss on fixed random windows of the corpus (a sanity check that training did something)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    spec = json.loads((Path(model_dir) / "cotscale_demo.json").read_text())["spec"]
    stream, gen = _encode(tok, corpus_dir), torch.Generator().manual_seed(seed)
    losses = [model(input_ids=(x := _batch(stream, spec, gen)), labels=x).loss.item() for _ in range(batches)]
    return sum(losses) / batches


def main(argv: list[str] | None = None) -> None:
    """`corpus [--out DIR]` regenerates the gsm8k mini data and the bundled corpus; `build SPEC_JSON OUT_DIR` builds one run."""
    ap = argparse.ArgumentParser(prog="python -m cotscale.demo_models")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--out", type=Path, default=DEFAULT_CORPUS)
    b = sub.add_parser("build")
    b.add_argument("spec", help="JSON of the `demo:` entry (with `steps`: int or {revision: steps})")
    b.add_argument("out_dir", type=Path)
    b.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    b.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "corpus":
        print("\n".join(str(p) for p in [*generate_gsm8k(), *generate_corpus(a.out)]))
    else:
        demo = json.loads(a.spec)
        print(json.dumps(build_demo_model(demo, demo_checkpoints(demo), a.out_dir, a.corpus, a.seed), indent=2))


if __name__ == "__main__":
    main()
