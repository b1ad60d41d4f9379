"""The ``cotscale`` lm-eval model: one wrapper for every inference strategy, on lm-eval's own HF or vLLM backend.

Modules, by concept: :mod:`.model` (``CotscaleLM``, the adapter registered as ``@register_model("cotscale")``: only
lm-eval's ``LM`` interface), :mod:`.run` and the format runners :mod:`.generate_format`, :mod:`.hybrid_format`,
:mod:`.thinking_format`, :mod:`.length_cuts`; :mod:`.engine` (chunking, the request cache and its counters: every
request reaches the backend there); :mod:`.capture` (the capture protocol: what a backend call computed, as typed
records); :mod:`.records` (usage records, sample fields, gathering from the ranks); :mod:`.backends` (the factory),
:mod:`.hf_backend`, :mod:`.vllm_backend` (lm-eval's HFLM / VLLM subclassed; their private hooks are in
:mod:`cotscale.compat`); :mod:`.prefix` (HF scoring that runs each shared token prefix once); pure functions
without a model: :mod:`.hybrid` (planning and voting), :mod:`.thinking`,
:mod:`.tokens` (token counting from ids), :mod:`.beam` (transformers' beam search, replayed on vLLM),
:mod:`.prompts`; :mod:`cotscale.strategy` (the strategy spec, shared with the config loader);
``python -m cotscale.lm`` (lm-eval's CLI with the model registered).

Importing the package (or a pure module of it) does not import lm-eval: ``CotscaleLM`` is loaded, and registered
with lm-eval, on first access (``from cotscale.lm import CotscaleLM``).

``CotscaleLM`` (registered as ``@register_model("cotscale")``) owns an ``HFLM`` or ``VLLM`` instance (lm-eval's
classes, subclassed only to hook their internal generation / scoring calls for token accounting) and implements the
strategy's ``format``:

* ``loglikelihood`` (standard): every request type is passed through unchanged.
* ``generate`` (cot_generate): passed through with the strategy's CoT cue appended (``prompt: cot``; the cot tasks'
  prompts end before it, see ``generate_format.with_cue``). ``max_gen_toks`` and the decoding come from the strategy.
* ``hybrid`` (hybrid, hybrid_cot, beam, self_consistency): the loglikelihood requests of one *document* (same
  ``task_name`` and ``doc_id``) share one rationale. All documents' rationales are generated in ONE batched
  ``generate_until`` call on the prompt ``P + cue`` (``P`` = the document's context, ``cue`` = the CoT cue when
  ``prompt: cot``), then every choice is scored on ``P + cue + rationale + answer_cue`` in ONE batched
  ``loglikelihood`` call, so all choices of a document see the same augmented context. ``generate_until`` requests
  (gsm8k) get the cue appended (``prompt: cot``) and are generated with the strategy's decoding.

  Partial-context tasks (winogrande, xwinograd: each option sits inside its context) generate from the whole
  problem instead (``P`` = the sentence with its blank and both options, :mod:`.prompts`) and score each completed
  sentence after the answer cue. docs/hybrid_format.md describes the format and how it differs from the seed.

Reasoning strategies (``thinking: true``, :mod:`.thinking`): lm-eval renders the prompts through the model's chat
template (``chat_template: true``; ``CotscaleLM.apply_chat_template`` passes the strategy's ``enable_thinking``). The
model first thinks, in ONE batched generation stopped at the end-of-thinking token and capped at
``thinking_budget`` (budget forcing: a thinking cut there gets the end token appended) or ``max_gen_toks``; then
``generate_until`` requests get their answer generated after ``thinking + end token + answer cue`` (one more batched
generation), and hybrid documents score every choice there. Only the answer goes back to lm-eval, so its filters
never see the thinking; a thinking that never closes is no answer ("" / every choice -inf, which the pipeline's
thinking tasks score wrong: cotscale.lm.thinking.score_no_answer_as_wrong). Usage records count
``thinking_tokens`` and ``answer_tokens`` apart.

Decoding
* ``greedy``: one sequence per request.
* ``beam``: ``num_beams`` beams, one search on both backends: HF ``model.generate(num_beams=k,
  num_return_sequences=k)``; vLLM: the same search replayed on vLLM's next-token log-probabilities
  (:mod:`.beam`; vLLM's own ``LLM.beam_search`` ranks and stops otherwise and takes no stop strings). Beams stop at
  the stop sequences during the search. The best beam is the rationale; all ``k`` beams are counted to their end in
  ``generated_tokens``.
* ``sample``: self-consistency with ``samples`` = k rationales per document at ``temperature`` (HF
  ``num_return_sequences=k``, vLLM ``SamplingParams(n=k)``; one request per document). Each rationale scores every
  choice; each rationale votes for its argmax choice. The wrapper returns to lm-eval, for choice i,
  ``log((votes_i + p_i) / (k + 1))`` where ``p = softmax(mean over rationales of the choice log-likelihoods)``:
  ``exp`` of the returned values is a distribution over the choices whose argmax is the majority vote (ties broken
  by the mean log-likelihood, then by the lower index, as ``np.argmax``), so lm-eval's ``acc`` IS the majority-vote
  accuracy. ``acc_norm`` (which divides by the choice length) is not a vote and is not meaningful here.
  For generate_until tasks (gsm8k) self-consistency is lm-eval's own path: the task with ``repeats: k`` and a
  ``majority_vote`` step in its filters (the pipeline renders that variant, ``cotscale.tasks.render_repeats_overrides``).
  The wrapper sends each document's k identical repeated requests as ONE backend request
  with k sampled sequences and hands one sequence to each repeat.

Outputs kept on the instance (read them after ``simple_evaluate(model=lm, ...)``; pass the *instance*, since a
model given by name is built inside lm-eval and discarded):
* ``lm.usage`` — a :class:`cotscale.usage.UsageRecorder` (iterable of usage records, see ``cotscale.usage``): one
  record per request sent to the backend (hybrid: one ``generate`` record per document with ``sequences`` = beams or
  samples, plus one ``loglikelihood`` record per choice and rationale).
* ``lm.rationales`` — ``{(task_name, doc_id): [rationale, ...]}`` for hybrid documents (best beam / all samples).
* ``lm.hybrid_details`` — per document: generation prompt, rationales, per-rationale choice log-likelihoods, votes.

* ``lm.gather_outputs()`` — usage, rationales, sample fields (``sample_fields()``: rationales and generation prompt
  per hybrid document) and cache counts of all ranks on rank 0 under ``accelerate launch``
  data parallelism. lm-eval pads each rank's requests to equal length with copies of its last request; the wrapper
  answers those copies without the backend and without usage records (``without_padding``).
* ``lm.save(usage_path, rationales_path)`` — gzip JSON lines, atomic; the model args ``usage_path=`` /
  ``rationales_path=`` save after every request batch, for CLI users:
  ``python -m cotscale.lm --model cotscale --model_args pretrained=...,strategy=hybrid_cot,usage_path=u.jsonl.gz``
  (a strategy name is one of config/config.yaml's strategies, so the CLI runs what the pipeline runs).

Resume (``cache_dir=``): requests go to the backend in chunks of ``request_chunk`` (default 1024; the chunks are cut
from the request list alone, so a rerun batches exactly as the first run did), and after each chunk the answers and
their usage records are appended to a :class:`cotscale.cache.RequestCache` in ``cache_dir``. A rerun after a kill
takes those answers and asks the backend only for the rest; its outputs equal an uninterrupted run's. Stored:
log-likelihoods and greedy or beam generations (hybrid rationales included); sampled generations are always
regenerated. ``lm.cache_stats()`` counts hits, misses and backend calls. (With HF ``batch_size: auto`` the detected
batch size may differ between a first run and its resumption, and with it the last bits of a log-likelihood; a fixed
batch size resumes bit for bit.)
Do not use lm-eval's own ``use_cache`` instead: it is keyed without the model, and cached requests never reach the
wrapper, so they would have no usage records and no rationales.
"""

from cotscale.errors import BackendUnavailable, DeviceUnavailable
from cotscale.lm.records import GatheredOutputs

__all__ = ["BackendUnavailable", "CotscaleLM", "DeviceUnavailable", "GatheredOutputs"]


def __getattr__(name: str):
    if name == "CotscaleLM":  # imports lm-eval (and registers the model there)
        from cotscale.lm.model import CotscaleLM

        return CotscaleLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
