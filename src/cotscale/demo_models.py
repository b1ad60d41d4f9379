"""Tiny causal LMs built locally for the embedded demo (no network, deterministic).

The demo must run the whole DAG on a laptop CPU with *real* N (parameter count) and D (training tokens), so
every model here is trained from scratch on a bundled corpus:

* ``generate_corpus`` writes ``config/demo_corpus/*.txt``: templated English in the formats the seven
  benchmarks prompt with (``Question:/Answer:``, ``#### N``, lettered choices, ``Let's think step by step.``,
  ``The answer is: B``), so the models learn a little about Q/A formats. The files are committed; the
  generator is kept here so they can be regenerated and checked (``python -m cotscale.demo_models corpus``).
* ``train_tokenizer`` trains a byte-level BPE (exact round trip of any text) on that corpus. It is retrained
  on every build: it takes well under a second and is deterministic, so there is no cache to invalidate.
* ``build_demo_model`` trains ONE run (AdamW, constant LR, fixed batch x seq_len, seeded sampler) and saves
  several checkpoints of it. The LR schedule and the data order do not depend on the total number of steps,
  so the checkpoint at step 100 is exactly what a 100-step build gives, and D = steps x batch x seq_len.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import torch

SPEC_KEYS = {"arch", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size", "seq_len",
             "batch_size", "lr"}
OPTIONAL_KEYS = {"tie_word_embeddings": False, "max_position_embeddings": 2048}
IGNORED_KEYS = {"steps"}  # lives next to the spec in config/demo.yaml; see demo_checkpoints()
SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}
DOC_SEP = "\n\n\n"  # documents in the corpus files are separated by two blank lines
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "config" / "demo_corpus"


# --------------------------------------------------------------------------------------------- corpus
NAMES = [("Tom", "he"), ("Anna", "she"), ("Sam", "he"), ("Lily", "she"), ("Ben", "he"), ("Maria", "she"),
         ("Jack", "he"), ("Emma", "she"), ("Omar", "he"), ("Nina", "she"), ("Leo", "he"), ("Zoe", "she"),
         ("Raj", "he"), ("Mia", "she"), ("Carlos", "he"), ("Ava", "she")]
ITEMS = ["apples", "pencils", "books", "marbles", "stickers", "cookies", "cards", "flowers", "shells", "coins",
         "eggs", "toy cars", "oranges", "stamps", "balloons", "crayons"]
KINDS = {  # kind -> (members, what every member has or does)
    "mammal": (["dog", "cat", "horse", "cow", "whale", "bat", "lion", "mouse", "rabbit", "bear"],
               "feeds its young with milk"),
    "bird": (["robin", "eagle", "owl", "duck", "penguin", "parrot", "sparrow", "crow"], "has feathers and a beak"),
    "fish": (["trout", "salmon", "shark", "tuna", "goldfish", "cod"], "lives in water and breathes with gills"),
    "reptile": (["snake", "lizard", "turtle", "crocodile", "gecko"], "has dry skin covered in scales"),
    "insect": (["ant", "bee", "beetle", "butterfly", "fly", "grasshopper"], "has six legs and three body parts"),
    "plant": (["oak tree", "rose", "fern", "cactus", "grass", "sunflower"], "makes its own food from sunlight"),
    "solid": (["ice", "rock", "wood", "iron", "glass", "salt"], "keeps its own shape"),
    "liquid": (["water", "milk", "juice", "oil", "honey", "vinegar"], "takes the shape of its container"),
    "gas": (["steam", "air", "oxygen", "helium", "smoke", "carbon dioxide"], "spreads out to fill any space"),
}
FACTS = [  # (question, right answer, wrong answers, explanation)
    ("What do plants need to make their own food?", "sunlight", ["sand", "darkness", "salt"],
     "Plants use sunlight, water and air to make food."),
    ("At what temperature does water freeze?", "0 degrees Celsius", ["50 degrees Celsius", "100 degrees Celsius",
     "20 degrees Celsius"], "Water freezes at 0 degrees Celsius."),
    ("At what temperature does water boil at sea level?", "100 degrees Celsius", ["0 degrees Celsius",
     "10 degrees Celsius", "40 degrees Celsius"], "Water boils at 100 degrees Celsius at sea level."),
    ("What is the closest star to the Earth?", "the Sun", ["the Moon", "Mars", "the North Star"],
     "The Sun is a star, and it is the closest star to the Earth."),
    ("What force pulls objects toward the Earth?", "gravity", ["magnetism", "friction", "wind"],
     "Gravity pulls objects toward the center of the Earth."),
    ("Which planet is known as the red planet?", "Mars", ["Venus", "Jupiter", "Saturn"],
     "Mars looks red because its soil contains iron oxide."),
    ("What is the largest planet in the solar system?", "Jupiter", ["Earth", "Mars", "Mercury"],
     "Jupiter is the largest planet in the solar system."),
    ("What gas do people breathe in to stay alive?", "oxygen", ["helium", "smoke", "carbon dioxide"],
     "People breathe in oxygen and breathe out carbon dioxide."),
    ("What gas do plants take in from the air?", "carbon dioxide", ["helium", "oxygen", "steam"],
     "Plants take in carbon dioxide and give off oxygen."),
    ("How many days does the Earth take to go around the Sun?", "about 365 days", ["about 30 days",
     "about 7 days", "about 1 day"], "The Earth goes around the Sun once a year, in about 365 days."),
    ("What causes day and night on the Earth?", "the Earth spinning", ["the Moon moving", "clouds",
     "the wind"], "The Earth spins once a day, so each side faces the Sun and then turns away."),
    ("Which part of a plant takes in water from the soil?", "the roots", ["the flowers", "the leaves",
     "the seeds"], "The roots of a plant take in water from the soil."),
    ("What is the main source of energy for life on Earth?", "the Sun", ["the Moon", "the ocean", "rocks"],
     "Almost all energy for life on Earth comes from the Sun."),
    ("Which material lets electricity flow through it easily?", "copper", ["wood", "rubber", "plastic"],
     "Metals such as copper let electricity flow easily."),
    ("What happens to ice when it is heated?", "it melts", ["it freezes", "it grows", "it turns to rock"],
     "When ice is heated it melts and becomes liquid water."),
    ("Why do people wear coats in winter?", "to stay warm", ["to get wet", "to run faster", "to grow taller"],
     "Coats trap heat near the body, so people stay warm."),
    ("What do bees collect from flowers?", "nectar", ["sand", "milk", "stones"],
     "Bees collect nectar from flowers and use it to make honey."),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"], "A spider has eight legs."),
    ("What tool is used to measure temperature?", "a thermometer", ["a ruler", "a scale", "a clock"],
     "A thermometer measures temperature."),
    ("What tool is used to measure length?", "a ruler", ["a thermometer", "a clock", "a cup"],
     "A ruler measures length."),
    ("What does a compass point to?", "north", ["the Sun", "the ocean", "the Moon"],
     "The needle of a compass points north."),
    ("What happens if you crack a mirror?", "the mirror breaks", ["you get seven years of bad luck",
     "it rains", "you become rich"], "Cracking a mirror only breaks the glass; it does not bring bad luck."),
    ("Can you see the Great Wall of China from the Moon with your eyes?", "no", ["yes", "only at night",
     "only in winter"], "No, the Great Wall is far too thin to see from the Moon with your eyes."),
    ("Do people use only ten percent of their brains?", "no, people use all of their brains",
     ["yes, only ten percent", "yes, only half", "only while asleep"],
     "People use all parts of their brains; the ten percent story is a myth."),
    ("What color is the sky on a clear day?", "blue", ["green", "red", "black"],
     "On a clear day the sky looks blue."),
    ("How many hours are in one day?", "24", ["12", "60", "7"], "One day has 24 hours."),
    ("How many minutes are in one hour?", "60", ["24", "100", "12"], "One hour has 60 minutes."),
    ("What is the boiling point of water in Fahrenheit?", "212 degrees", ["100 degrees", "32 degrees",
     "0 degrees"], "Water boils at 212 degrees Fahrenheit."),
]
ACTIVITIES = {
    "Making tea": ["{N} fills a kettle with water.", "{P} puts the kettle on the stove.",
                   "When the water boils, {p} pours it into a cup.", "{P} adds a tea bag and waits a few minutes.",
                   "Then {p} takes out the tea bag and drinks the tea."],
    "Washing a car": ["{N} parks the car in the driveway.", "{P} fills a bucket with soapy water.",
                      "{P} scrubs the car with a big sponge.", "{P} rinses the soap off with a hose.",
                      "Finally {p} dries the car with a soft towel."],
    "Planting a tree": ["{N} digs a deep hole in the garden.", "{P} places the young tree in the hole.",
                        "{P} fills the hole with soil and presses it down.", "{P} waters the tree well.",
                        "Every week {p} checks that the tree has enough water."],
    "Baking a cake": ["{N} mixes flour, sugar and eggs in a bowl.", "{P} pours the batter into a pan.",
                      "{P} puts the pan in a hot oven.", "After half an hour, {p} takes the cake out.",
                      "{P} lets the cake cool and then cuts a slice."],
    "Riding a bike": ["{N} puts on a helmet.", "{P} climbs onto the bike and holds the handles.",
                      "{P} pushes the pedals and starts to roll forward.", "{P} rides carefully down the street.",
                      "At the end of the ride, {p} parks the bike and takes off the helmet."],
    "Brushing teeth": ["{N} puts toothpaste on a toothbrush.", "{P} brushes the front teeth and the back teeth.",
                       "{P} spits out the toothpaste.", "{P} rinses the mouth with water.",
                       "Then {p} puts the toothbrush back in the cup."],
    "Painting a fence": ["{N} opens a can of white paint.", "{P} dips a brush into the paint.",
                         "{P} paints the fence from top to bottom.", "{P} waits for the first coat to dry.",
                         "Then {p} adds a second coat of paint."],
    "Swimming laps": ["{N} puts on goggles at the pool.", "{P} jumps into the water.",
                      "{P} swims to the far end of the pool.", "{P} turns around and swims back.",
                      "After ten laps, {p} climbs out and dries off with a towel."],
}
SIZE_PAIRS = [("trophy", "suitcase"), ("ball", "box"), ("book", "bag"), ("bed", "room"), ("car", "garage"),
              ("cake", "plate"), ("shoe", "box"), ("table", "door"), ("fish", "bowl"), ("coat", "closet")]
RACERS = ["snail", "turtle", "duck", "dog", "rabbit", "horse", "cheetah"]  # slowest to fastest
LETTERS = "ABCD"


def _a(word: str) -> str:
    """English article: 'an owl', 'a dog', and bare mass nouns ('water', not 'a water')."""
    if word in {m for k in ("solid", "liquid", "gas") for m in KINDS[k][0]} - {"rock"}:
        return word
    return ("an " if word[0] in "aeiou" else "a ") + word


def _arith(r: random.Random) -> tuple[str, list[str], int]:
    """A grade-school word problem: (question, reasoning sentences, integer answer)."""
    (n, p), (m, _) = r.sample(NAMES, 2)
    item, P = r.choice(ITEMS), p.capitalize()
    a, b = r.randint(2, 40), r.randint(2, 20)
    kind = r.randrange(6)
    if kind == 0:
        return (f"{n} has {a} {item}. {P} buys {b} more {item}. How many {item} does {n} have now?",
                [f"{n} starts with {a} {item}.", f"After buying {b} more, {p} has {a} + {b} = <<{a}+{b}={a + b}>>"
                 f"{a + b} {item}."], a + b)
    if kind == 1:
        a += b
        return (f"{n} has {a} {item}. {P} gives {b} {item} to {m}. How many {item} does {n} have left?",
                [f"{n} starts with {a} {item}.", f"After giving away {b}, {p} has {a} - {b} = <<{a}-{b}={a - b}>>"
                 f"{a - b} {item} left."], a - b)
    if kind == 2:
        a, b = r.randint(2, 9), r.randint(2, 12)
        return (f"{n} has {a} boxes. Each box holds {b} {item}. How many {item} does {n} have in all?",
                [f"There are {a} boxes with {b} {item} each.", f"So {n} has {a} * {b} = <<{a}*{b}={a * b}>>"
                 f"{a * b} {item}."], a * b)
    if kind == 3:
        a, b = r.randint(2, 12), r.randint(2, 9)
        return (f"{n} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?",
                [f"{n} has {a * b} {item} for {b} friends.", f"Each friend gets {a * b} / {b} = "
                 f"<<{a * b}/{b}={a}>>{a} {item}."], a)
    if kind == 4:
        a, b = r.randint(1, 15), r.randint(2, 9)
        return (f"One notebook costs {a} dollars. {n} buys {b} notebooks. How many dollars does {n} spend?",
                [f"Each notebook costs {a} dollars.", f"{b} notebooks cost {b} * {a} = <<{b}*{a}={a * b}>>"
                 f"{a * b} dollars."], a * b)
    c = r.randint(1, a + b - 1)
    return (f"{n} has {a} {item}. {P} buys {b} more and then gives {c} to {m}. How many {item} does {n} have?",
            [f"After buying, {n} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}.",
             f"After giving {c} to {m}, {p} has {a + b} - {c} = <<{a + b}-{c}={a + b - c}>>{a + b - c} {item}."],
            a + b - c)


def _choice_question(r: random.Random) -> tuple[str, str, list[str], str]:
    """A 4-way science or arithmetic question: (question, answer, distractors, explanation)."""
    kind = r.randrange(4)
    if kind == 0:
        cat = r.choice(list(KINDS))
        members, prop = KINDS[cat]
        x = r.choice(members)
        others = r.sample([o for k, (ms, _) in KINDS.items() if k != cat for o in ms], 3)
        return f"Which of these is {_a(cat)}?", x, others, f"{_a(x).capitalize()} is {_a(cat)}, because it {prop}."
    if kind == 1:
        cat = r.choice(list(KINDS))
        x = _a(r.choice(KINDS[cat][0])).capitalize()
        return (f"{x} is an example of which of these?", cat, r.sample([k for k in KINDS if k != cat], 3),
                f"{x} {KINDS[cat][1]}, so it is {_a(cat)}.")
    if kind == 2:
        q, a, wrong, why = r.choice(FACTS)
        return q, a, list(wrong), why
    a, b = r.randint(2, 30), r.randint(2, 30)
    op, val = r.choice([("plus", a + b), ("times", a * b), ("minus", a - b)])
    wrong = r.sample([v for v in range(val - 6, val + 7) if v != val], 3)
    return f"What is {a} {op} {b}?", str(val), [str(w) for w in wrong], f"{a} {op} {b} is {val}."


def _docs(r: random.Random) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {k: [] for k in ("arithmetic", "choices", "facts", "stories", "sentences")}
    for _ in range(550):
        q, steps, ans = _arith(r)
        plain = re.sub(r"<<[^>]*>>", "", " ".join(steps))  # gsm8k's calculator annotations only in ####-style
        files["arithmetic"].append(r.choice([
            f"Question: {q}\nAnswer: {' '.join(steps)}\n#### {ans}",
            f"Q: {q}\nA: Let's think step by step. {plain} The answer is {ans}.",
            f"Question: {q} Let's think step by step.\nAnswer: {plain} The answer is: {ans}",
        ]))
    for _ in range(800):
        q, a, wrong, why = _choice_question(r)
        opts = wrong + [a]
        r.shuffle(opts)
        L = LETTERS[opts.index(a)]
        lettered = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
        paren = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(opts))
        files["choices"].append(r.choice([
            f"Question: {q}\nAnswer: {a}",
            f"{q}\n{lettered}\nAnswer: {L}",
            f"Q: {q}\n{paren}\nA: Let's think step by step. {why} The answer is ({L}).",
            f"Question: {q}\n{lettered}\nAnswer: Let's think step by step. {why} The answer is: {L}",
            f"Question: {q}\nAnswer: {why} The answer is: {a}",
        ]))
    for _ in range(400):
        q, a, _, why = r.choice(FACTS) if r.random() < 0.5 else _choice_question(r)
        files["facts"].append(r.choice([f"Q: {q}\nA: {why}", f"{why}", f"Question: {q}\nAnswer: {a}. {why}"]))
    for _ in range(250):
        act, steps = r.choice(list(ACTIVITIES.items()))
        n, p = r.choice(NAMES)
        k = r.randint(3, len(steps))
        files["stories"].append(f"{act}: " + " ".join(s.format(N=n, P=p.capitalize(), p=p) for s in steps[:k]))
    for _ in range(500):
        if r.random() < 0.5:
            a, b = r.choice(SIZE_PAIRS)
            big = r.random() < 0.5
            files["sentences"].append(f"The {a} did not fit in the {b} because the {a if big else b} was too "
                                      f"{'big' if big else 'small'}.")
        else:
            a, b = r.sample(RACERS, 2)
            fast = max(a, b, key=RACERS.index)
            (n, _), (m, _) = r.sample(NAMES, 2)
            files["sentences"].append(f"{n} bet on the {a} and {m} bet on the {b}. The {fast} was faster, so "
                                      f"{n if fast == a else m} won the bet.")
    return files


def generate_corpus(out_dir: Path = DEFAULT_CORPUS, seed: int = 0) -> list[Path]:
    """Write the bundled corpus (one .txt per genre). Same seed -> byte-identical files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, docs in _docs(random.Random(seed)).items():
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
def train_tokenizer(corpus_dir: Path, vocab_size: int):
    """Byte-level BPE: every string round-trips exactly (no <unk> ever needed), digits and punctuation included.

    No template post-processor: lm-eval decides itself whether to prepend BOS, and the training stream is
    documents joined by <|eos|>, so the model learns to stop after an answer (short demo generations).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(read_corpus(corpus_dir), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=OPTIONAL_KEYS["max_position_embeddings"],
                                   clean_up_tokenization_spaces=False, **SPECIAL)


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
                     seed: int = 0) -> dict[str, dict]:
    """Train one run and save `out_dir/<revision>/` after `steps` optimizer steps for each checkpoint.

    Returns {revision: {"params": N, "train_tokens": D, "steps": steps, "final_loss": mean loss of the
    last 10 steps}}. Same spec, corpus and seed -> byte-identical model.safetensors.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint is only log noise
    spec, out_dir = _full_spec(spec), Path(out_dir)
    tok = train_tokenizer(corpus_dir, spec["vocab_size"])
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
    built = build_demo_model(entries[0]["demo"], {m["revision"]: m["demo_steps"] for m in entries}, out_dir, corpus_dir, config["seed"])
    for m in entries:
        real = built[m["revision"]]
        if (real["params"], real["train_tokens"]) != (m["N"], m["D"]):
            raise ValueError(
                f"config key models.{name}: states params={m['N']:.0f}, train_tokens={m['D']:.0f} for revision "
                f"{m['revision']!r}, but the build has params={real['params']}, train_tokens={real['train_tokens']}; "
                "put the built numbers in the config"
            )
    return built


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
    """`corpus [--out DIR]` regenerates the bundled corpus; `build SPEC_JSON OUT_DIR` builds one run."""
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
        print("\n".join(str(p) for p in generate_corpus(a.out)))
    else:
        demo = json.loads(a.spec)
        print(json.dumps(build_demo_model(demo, demo_checkpoints(demo), a.out_dir, a.corpus, a.seed), indent=2))


if __name__ == "__main__":
    main()
