"""Demo models: loadable offline, honest N and D, reproducible, and actually trained."""

import json

import pytest
import torch

from cotscale import demo_models as dm

SPEC = dict(arch="llama", hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128, vocab_size=512,
            seq_len=64, batch_size=4, lr=3e-3)
CKPTS = {"step2": 2, "step40": 40}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, dm.build_demo_model(SPEC, CKPTS, out / "a", seed=7)


def test_loads_offline_with_honest_n_and_d(built, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, info = built
    for rev, steps in CKPTS.items():
        model = AutoModelForCausalLM.from_pretrained(out / "a" / rev)
        AutoTokenizer.from_pretrained(out / "a" / rev)
        n = sum(p.numel() for p in model.parameters())
        assert n == info[rev]["params"] == dm.count_params(SPEC)
        assert info[rev]["train_tokens"] == steps * SPEC["batch_size"] * SPEC["seq_len"]
        meta = json.loads((out / "a" / rev / "cotscale_demo.json").read_text())
        assert (meta["params"], meta["train_tokens"], meta["steps"], meta["seed"]) == (n, info[rev]["train_tokens"],
                                                                                      steps, 7)
        assert model.config.tie_word_embeddings is False and model.config.max_position_embeddings >= 1024
    assert not list((out / "a").glob(".*"))  # no temp dirs left behind


def test_same_seed_gives_identical_weights(built):
    out, _ = built
    dm.build_demo_model(SPEC, {"step2": 2}, out / "b", seed=7)
    assert (out / "a/step2/model.safetensors").read_bytes() == (out / "b/step2/model.safetensors").read_bytes()


def test_training_lowers_corpus_loss(built):
    out, _ = built
    assert dm.corpus_loss(out / "a/step40") < dm.corpus_loss(out / "a/step2") - 0.5


def test_tokenizer_round_trip(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[0] / "a/step40")
    for text in ["Question: Tom has 5 apples.\nAnswer: 5 + 3 = <<5+3=8>>8\n#### 42", "The answer is: B",
                 "  Ünïcode — 3.14, \"quotes\" (x) [y] {z}!?\n\n"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert [tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token] == list(dm.SPECIAL.values())


def test_gpt_neox_counts_and_spec_checks(tmp_path):
    spec = {**SPEC, "arch": "gpt_neox", "steps": {"step1": 1}}
    info = dm.build_demo_model(spec, dm.demo_checkpoints(spec), tmp_path, seed=0)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "step1")
    assert type(model).__name__ == "GPTNeoXForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == info["step1"]["params"] == dm.count_params(spec)
    assert dm.demo_checkpoints({"steps": 300}) == {"main": 300}
    with pytest.raises(ValueError, match="head_dim"):
        dm.count_params({**SPEC, "num_heads": 4})
    with pytest.raises(ValueError, match="unknown"):
        dm.count_params({**SPEC, "hidden": 3})


def test_bundled_corpus_is_what_the_generator_writes(tmp_path):
    for path in dm.generate_corpus(tmp_path):
        assert path.read_bytes() == (dm.DEFAULT_CORPUS / path.name).read_bytes(), path.name
    for path in dm.generate_gsm8k(tmp_path):
        assert path.read_bytes() == (dm.DEFAULT_DATA / "gsm8k" / path.name).read_bytes(), path.name
    assert sum(p.stat().st_size for p in dm.DEFAULT_CORPUS.glob("*.txt")) < 400_000


def test_corpus_teaches_the_chains_only_after_the_cue():
    """A scored gsm8k problem's worked solution is in the corpus after the CoT cue and its bare answer nowhere."""
    from cotscale.strategy import DEFAULT_COT_CUE

    assert DEFAULT_COT_CUE.strip() == "Let's think step by step."  # the corpus teaches the cue the strategies send
    text = (dm.DEFAULT_CORPUS / "arithmetic.txt").read_text()
    rows = [json.loads(line) for line in (dm.DEFAULT_DATA / "gsm8k" / "test.jsonl").read_text().splitlines()]
    for row in rows[:dm.demo_limit()]:
        answer = row["answer"].rsplit("#### ", 1)[1]
        assert f"Q: {row['question']}\nA: {dm.COT_CUE} " in text
        assert f"{row['question']}\nAnswer: {answer}" not in text
        assert f"The answer is {answer}." in text.split(row["question"], 2)[1].split("\n\n\n")[0]


def test_global_torch_state_restored(built):
    assert not torch.are_deterministic_algorithms_enabled()


def _build_in_a_fresh_process(tmp_path, name: str, cpu_isa: str | None) -> tuple[str, bytes]:
    """A 30-step tiny build in its own interpreter after cotscale.workflow.pin_cpu_isa (as every rule's job runs it):
    (torch's CPU capability there, the weights' bytes)."""
    import subprocess
    import sys
    from pathlib import Path

    spec = {"arch": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 1, "intermediate_size": 64,
            "vocab_size": 512, "seq_len": 128, "batch_size": 2, "lr": 1e-2, "steps": 30}
    code = ("import json, sys\nfrom cotscale.workflow import pin_cpu_isa\n"
            f"pin_cpu_isa({{'cpu_isa': {cpu_isa!r}}})\n"
            "import torch\nfrom cotscale import demo_models as dm\n"
            f"dm.build_demo_model({spec!r}, {{'main': 30}}, sys.argv[1])\n"
            "print(torch.backends.cpu.get_cpu_capability())")
    src = str(Path(dm.__file__).resolve().parents[1])
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], capture_output=True, text=True,
                         timeout=600, env={"PYTHONPATH": src, "PATH": "", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.split()[-1], (tmp_path / name / "main" / "model.safetensors").read_bytes()


@pytest.mark.skipif("avx512f" not in open("/proc/cpuinfo").read(), reason="needs an AVX-512 machine to compare against")
def test_cpu_isa_pins_the_kernels_and_so_the_weights(tmp_path):
    """On an AVX-512 machine torch dispatches to AVX-512 kernels, whose float results differ from AVX2's: pinned to
    avx2 the job's torch reports AVX2 and the build's bytes differ from the unpinned one's (the demo's tables came
    out differently on AVX2 and AVX-512 machines before the pin)."""
    own_isa, own = _build_in_a_fresh_process(tmp_path, "own", None)
    pinned_isa, pinned = _build_in_a_fresh_process(tmp_path, "pinned", "avx2")
    assert (own_isa, pinned_isa) == ("AVX512", "AVX2")
    assert own != pinned
