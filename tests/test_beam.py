"""cotscale.lm.beam (the beam search the vLLM backend runs) against transformers' own beam search on a tiny model.

Oracle: ``model.generate(num_beams=k, num_return_sequences=k)`` of transformers, one prompt at a time, with a stop
criterion written here (not cotscale's). cotscale.lm.beam gets only the model's next-token log-probabilities.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from _lm_fixtures import GEN_DOCS, MC_DOCS, build_tiny_model, decoded_contains, transformers_beams  # noqa: E402

from cotscale.lm import beam  # noqa: E402

PROMPTS = [f"Question: {d['question']}\nAnswer: Let's think step by step." for d in MC_DOCS[:2] + GEN_DOCS[:1]]


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    path = build_tiny_model(Path(tmp_path_factory.mktemp("tiny")))
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, transformers.AutoTokenizer.from_pretrained(path)


def next_token_logprobs(model):
    @torch.no_grad()
    def top_logprobs(sequences, m):
        out = []
        for ids in sequences:  # one at a time, no cache: nothing shared with transformers' batched search
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            values, tokens = torch.log_softmax(logits, -1).topk(m)
            out.append(dict(zip(tokens.tolist(), values.tolist())))
        return out
    return top_logprobs


@pytest.mark.parametrize(("k", "max_new", "stops", "second_eos"), [
    (3, 16, ["."], None),  # the best beam runs to the budget, others end at "."
    (2, 12, [" step by step by"], None),
    (3, 14, [], " The"),  # a second EOS id that the beams write at different steps
    (4, 10, ["answer"], " by"),
], ids=["stop", "long-stop", "two-eos", "stop-and-eos"])
def test_beam_search_returns_transformers_beams(model_and_tokenizer, k, max_new, stops, second_eos):
    model, tok = model_and_tokenizer
    eos = {tok.eos_token_id}
    if second_eos:
        (extra,) = tok(second_eos, add_special_tokens=False).input_ids
        eos.add(extra)
    stopped = decoded_contains(tok, stops)
    expected = [transformers_beams(model, tok, p, k, max_new, eos, stopped) for p in PROMPTS]
    prompts = [tok(p).input_ids for p in PROMPTS]
    got = beam.beam_search(prompts, next_token_logprobs(model), k, [max_new] * len(prompts), frozenset(eos),
                           lambda i, ids: stopped(ids))
    assert got == expected
    lengths = {len(b) for beams in expected for b in beams}
    assert len(lengths) > 1 and max(lengths) <= max_new  # beams of different lengths: ends were exercised

