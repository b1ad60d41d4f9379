"""Resume after a kill: the request cache of cotscale.lm (cotscale.cache), in process and through real Snakemake.

In process: a tiny locally trained Llama answers hybrid requests in chunks; a second model instance on the same cache
answers everything from it with identical results and usage, and a partly written cache (a kill mid-way, a torn last
line) is completed with only the missing chunks sent to the backend.

End to end (slow): a real Snakemake evaluation job is SIGKILLed — the whole process group, as a node crash does —
after its third cache write; a plain rerun resumes it; a second crash just before results.json leaves nothing among
the job's outputs (a task's outputs wait in its `.complete` folder until the whole suite is done); the third run
answers every request from the cache. The final samples, usage and scores equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from _demo import SHARED_ENV, eval_dir, read_gz, read_results, shared_config, shared_run, snakemake, write_config  # noqa: E402
from _lm_fixtures import MC_DOCS, build_tiny_model, gen_requests, mc_requests  # noqa: E402

from cotscale import lm as cl  # noqa: E402
from cotscale.cache import RequestCache  # noqa: E402

HYBRID_COT = {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "max_gen_toks": 10}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def make_lm(model: Path, cache_dir: Path | None, strategy=HYBRID_COT, chunk: int = 6):
    return cl.CotscaleLM(pretrained=str(model), backend="hf", dtype="float32", batch_size=2, device="cpu",
                         strategy=strategy, cache_dir=str(cache_dir) if cache_dir else None, request_chunk=chunk)


def run_hybrid(lm):
    out = lm.loglikelihood(mc_requests())
    return out, list(lm.usage), dict(lm.rationales)


def test_second_run_comes_from_the_cache(tiny_model, tmp_path):
    reference = run_hybrid(make_lm(tiny_model, None))
    first_lm = make_lm(tiny_model, tmp_path / "cache")
    first = run_hybrid(first_lm)
    assert first == reference  # caching changes nothing about the answers
    n_gen, n_ll = len(MC_DOCS), 4 * len(MC_DOCS)
    assert first_lm.cache_stats()["misses"] == n_gen + n_ll and first_lm.cache_stats()["hits"] == 0
    # 5 rationales in chunks of 6 -> 1 generate call; 20 choices (4 per document) in chunks of 6 cut at the next
    # document boundary -> 8 + 8 + 4: 3 loglikelihood calls, each written at once
    assert first_lm.cache_stats()["backend_calls"] == {"generate": 1, "loglikelihood": 3}
    assert first_lm.engine.cache.chunks_written == 4

    second_lm = make_lm(tiny_model, tmp_path / "cache")
    second = run_hybrid(second_lm)
    assert second == reference
    stats = second_lm.cache_stats()
    assert (stats["hits"], stats["misses"], stats["backend_calls"]) == (n_gen + n_ll, 0,
                                                                        {"generate": 0, "loglikelihood": 0})


def test_a_killed_run_is_completed_from_its_partial_cache(tiny_model, tmp_path):
    reference = run_hybrid(make_lm(tiny_model, None))
    cache = tmp_path / "cache"
    lm = make_lm(tiny_model, cache)
    run_hybrid(lm)
    (part,) = cache.glob("requests-*.jsonl")
    lines = part.read_bytes().splitlines(keepends=True)
    assert len(lines) == 4  # one line per chunk: 1 generation chunk, 3 scoring chunks
    # killed during the 4th write: 3 complete chunks and half a line
    part.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])

    resumed_lm = make_lm(tiny_model, cache)
    assert resumed_lm.engine.cache.chunks_written == 0 and not part.read_bytes().endswith(lines[3][:10])
    resumed = run_hybrid(resumed_lm)
    assert resumed == reference
    stats = resumed_lm.cache_stats()
    # the rationales and the first 2 scoring chunks (16 choices) came from the cache; the last chunk of 4 is redone
    assert stats["hits_by_kind"] == {"generate": 5, "loglikelihood": 16}
    assert stats["misses_by_kind"] == {"generate": 0, "loglikelihood": 4}
    assert stats["backend_calls"] == {"generate": 0, "loglikelihood": 1}
    assert len(part.read_bytes().splitlines()) == 4  # the torn line was cut off before appending


def test_the_cache_is_per_setup_and_skips_sampled_generations(tiny_model, tmp_path):
    cache = tmp_path / "cache"
    run_hybrid(make_lm(tiny_model, cache))
    (first,) = cache.glob("requests-*.jsonl")
    other = cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size=4, device="cpu",
                          strategy=HYBRID_COT, cache_dir=str(cache), request_chunk=6)
    assert not first.exists()  # another batch size: the old answers are not reused
    assert run_hybrid(other)[0] and other.cache_stats()["hits"] == 0

    sampled = {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 2, "temperature": 0.8,
               "max_gen_toks": 6}
    lm = make_lm(tiny_model, tmp_path / "sampled", strategy=sampled)
    lm.loglikelihood(mc_requests())
    again = make_lm(tiny_model, tmp_path / "sampled", strategy=sampled)
    again.loglikelihood(mc_requests())
    # rationales are regenerated (misses), their scoring requests are new text: only what matches is reused
    assert again.cache_stats()["hits_by_kind"]["generate"] == 0 and again.cache_stats()["backend_calls"]["generate"] == 1
    greedy_gen = gen_requests()
    lm = make_lm(tiny_model, tmp_path / "gen", strategy={"format": "generate", "max_gen_toks": 8})
    texts = lm.generate_until(greedy_gen)
    again = make_lm(tiny_model, tmp_path / "gen", strategy={"format": "generate", "max_gen_toks": 8})
    assert again.generate_until(greedy_gen) == texts and again.cache_stats()["backend_calls"]["generate"] == 0
    assert list(again.usage) == list(lm.usage)


def test_auto_batch_size_is_detected_once_per_length_not_per_chunk(tiny_model):
    lm = cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size="auto", device="cpu",
                       strategy="standard", request_chunk=2)
    ours, fixed = lm.loglikelihood(mc_requests()), make_lm(tiny_model, None, strategy="standard").loglikelihood(mc_requests())
    assert [g for _, g in ours] == [g for _, g in fixed]
    assert max(abs(a - b) for (a, _), (b, _) in zip(ours, fixed)) < 1e-4
    detected = lm.backend.detected_batch_sizes  # longest request length -> detected batch size
    # chunks of 2 requests, cut at the next document boundary: one chunk per 4-choice document
    assert lm.cache_stats()["backend_calls"]["loglikelihood"] == 5 and 1 <= len(detected) <= 4


def test_cache_store_drops_stale_and_torn_files(tmp_path):
    store = RequestCache(tmp_path, {"model": "a"})
    store.put_many({"k1": {"answer": [-1.5, True], "prompt_tokens": 3}})
    store.put_many({"k2": {"answer": [float("-inf"), False], "prompt_tokens": 4}})
    again = RequestCache(tmp_path, {"model": "a"})
    assert again.get("k1") == {"answer": [-1.5, True], "prompt_tokens": 3} and again.get("k2")["answer"][0] == -float("inf")
    assert again.get("nope") is None and again.stats() == {"hits": 2, "misses": 1}
    other = RequestCache(tmp_path, {"model": "b"})
    assert other.get("k1") is None and len(list(tmp_path.glob("requests-*.jsonl"))) == 0
    other.put_many({"k3": {"x": 1}})
    other.remove()
    assert not tmp_path.exists()


# ------------------------------------------------------------------------------------------- real Snakemake
KILL_SHIM = """
import os, signal
_after = int(os.environ.get("COTSCALE_TEST_KILL_AFTER_WRITES", "0"))
_at = os.environ.get("COTSCALE_TEST_KILL_AT")
def _crash():  # what a node crash or an OOM kill of the whole job does: no cleanup, no exception handlers
    os.killpg(os.getpgid(0), signal.SIGKILL)
if _after:
    from cotscale.cache import RequestCache
    _put = RequestCache.put_many
    def put_many(self, entries):
        _put(self, entries)
        if self.chunks_written >= _after:
            _crash()
    RequestCache.put_many = put_many
if _at:
    import cotscale.io
    _write_json = cotscale.io.write_json
    def write_json(path, obj):
        if os.path.basename(str(path)) == _at:
            _crash()
        return _write_json(path, obj)
    cotscale.io.write_json = write_json
"""
MODEL, STRATEGY, TASK = "mini-llama", "hybrid_cot", "arc_challenge"


@pytest.fixture(scope="module")
def kill_shim(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shim")
    (folder / "sitecustomize.py").write_text(KILL_SHIM)
    return folder


def _env(**extra) -> dict:
    return {**SHARED_ENV, **extra}


@pytest.mark.slow
def test_killed_evaluation_resumes_to_the_same_outputs(root, tmp_path, tmp_path_factory, kill_shim):
    """The shared run (tests/_demo.py) is the uninterrupted reference: one hybrid CoT job of mini-llama on 16 arc
    documents, 16 rationales and their ~64 choices, in chunks of 8 requests."""
    target = f"{eval_dir(MODEL, STRATEGY, TASK)}/results.json"
    reference = shared_run(tmp_path_factory, root)
    ref_meta = read_results(reference, MODEL, STRATEGY, TASK)["cotscale"]["cache"]
    total, choices = ref_meta["misses"], ref_meta["misses_by_kind"]["loglikelihood"]
    assert ref_meta["hits"] == 0 and ref_meta["misses_by_kind"]["generate"] == 16 and 48 <= choices <= 80
    ll_chunks = ref_meta["backend_calls"]["loglikelihood"]  # chunks of 8 requests, cut at document boundaries
    assert ref_meta["backend_calls"]["generate"] == 2 and choices // 16 <= ll_chunks <= -(-choices // 8)
    assert not (reference / "results" / "cache").exists()  # removed once the outputs were written

    work = tmp_path / "killed"
    write_config(work, shared_config(root))
    model_dir = Path("results") / "demo_models" / MODEL  # the build is not under test: reuse the reference's
    shutil.copytree(reference / model_dir, work / model_dir)
    shim = {"PYTHONPATH": f"{kill_shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # 1. crash after the 3rd cache write (2 generation chunks, 1 scoring chunk): nothing of the outputs exists
    run = snakemake(root, work, target, env=_env(COTSCALE_TEST_KILL_AFTER_WRITES="3", **shim), new_session=True)
    assert run.returncode == -signal.SIGKILL
    out = work / eval_dir(MODEL, STRATEGY, TASK)
    assert not any(out.glob("*")) if out.exists() else True
    cache = work / "results" / "cache" / MODEL / STRATEGY / TASK
    (part,) = cache.glob("requests-*.jsonl")
    assert len(part.read_text().splitlines()) == 3

    # 2. after `--unlock` (a crashed Snakemake leaves its lock), a plain rerun resumes; this time the job crashes
    # after samples and usage, just before results.json
    assert snakemake(root, work, extra=["--unlock"]).returncode == 0
    run = snakemake(root, work, target, env=_env(COTSCALE_TEST_KILL_AT="results.json", **shim), new_session=True)
    assert run.returncode == -signal.SIGKILL
    finished = cache.with_name(f"{TASK}.complete")
    assert (finished / "samples.jsonl.gz").exists() and (finished / "usage.jsonl.gz").exists()
    assert not (finished / "results.json").exists() and not any(out.glob("*"))
    log = (work / "logs" / "evaluate" / MODEL / f"{STRATEGY}.log").read_text()
    assert "resuming with 24 answers" in log  # 16 rationales + 8 choices from step 1
    calls = {"generate": 0, "loglikelihood": ll_chunks - 1}
    assert f"requests: 24 from the request cache, {total - 24} from the backend in {calls} backend calls" in log
    assert len(part.read_text().splitlines()) == 2 + ll_chunks  # every chunk is now in the cache

    # 3. a plain rerun: the task without its results.json is evaluated again, every request from the cache
    assert snakemake(root, work, extra=["--unlock"]).returncode == 0
    run = snakemake(root, work, target, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    meta = read_results(work, MODEL, STRATEGY, TASK)["cotscale"]["cache"]
    assert (meta["hits"], meta["misses"]) == (total, 0)
    assert meta["backend_calls"] == {"generate": 0, "loglikelihood": 0}
    assert not cache.exists() and not finished.exists()

    ref_dir = reference / eval_dir(MODEL, STRATEGY, TASK)
    assert read_gz(out / "samples.jsonl.gz") == read_gz(ref_dir / "samples.jsonl.gz")
    assert (out / "usage.jsonl.gz").read_bytes() == (ref_dir / "usage.jsonl.gz").read_bytes()
    ours, ref = read_results(work, MODEL, STRATEGY, TASK), read_results(reference, MODEL, STRATEGY, TASK)
    for key in ("results", "groups", "n-samples", "configs", "versions"):
        assert ours.get(key) == ref.get(key), key
    assert {r["doc_id"] for r in read_gz(out / "samples.jsonl.gz")} == set(range(16))
    assert all(r.get("rationales") for r in read_gz(out / "samples.jsonl.gz"))
