"""The Hugging Face backend: lm-eval's ``HFLM`` with per-row stop criteria, beams / k samples and token capture."""

from __future__ import annotations

from cotscale import compat
from cotscale.lm import prefix
from cotscale.lm.beam import EARLY_STOPPING, LENGTH_PENALTY
from cotscale.lm.capture import SINGLE, CapturingBackend, GeneratedSequence, Generation
from cotscale.lm.tokens import STOP_AFTER_CONTENT, count_to_stop, ends_in_stop, eos_ids, response_text, stop_lookback

_CLASS: list[type] = []


def hf_backend_class() -> type:
    """The HFLM subclass (built once: importing torch and transformers is the slow part)."""
    if _CLASS:
        return _CLASS[0]
    import torch
    import transformers

    compat.skip_sklearn_in_transformers()
    from lm_eval.models.huggingface import HFLM

    class PerRowStop(transformers.StoppingCriteria):
        """lm-eval's stop-sequence check, but per row: returns one flag per sequence, so it is correct for
        ``num_return_sequences`` and beam search (lm-eval's own criteria assume one row per prompt and stop the
        whole batch only when all are done). ``after_content``: stop_after_content (a stop in the whitespace-only
        beginning of a row does not end it)."""

        def __init__(self, tokenizer, stops: list[str], prompt_len: int, after_content: bool = False):
            self.prompt_len, self.stops, self.after_content = prompt_len, stops, after_content
            self.lookback = stop_lookback(stops, lambda s: tokenizer.encode(s, add_special_tokens=False))

            def decode(ids):
                return tokenizer.decode(ids, skip_special_tokens=False)

            self.decode = decode

        def __call__(self, input_ids, scores, **kwargs):
            rows = input_ids[:, self.prompt_len:].tolist()
            return torch.tensor([ends_in_stop(row, self.stops, self.decode, self.lookback, self.after_content)
                                 for row in rows],
                                dtype=torch.bool, device=input_ids.device)

    class SequenceLogprob(transformers.LogitsProcessor):
        """Records the log-probability the model gave each generated id, per row, without keeping a step's logits
        beyond the next: each call takes the previous step's log-softmax at the id just appended. Custom processors
        run before the sampling warpers (temperature, top-k/p), so these are the model's own probabilities."""

        def __init__(self):
            self.last, self.picked = None, []

        def __call__(self, input_ids, scores):
            if self.last is not None:
                self.picked.append(self.last.gather(1, input_ids[:, -1:])[:, 0])
            self.last = torch.log_softmax(scores.float(), dim=-1)
            return scores

        def per_token(self, sequences) -> list[list[float]]:
            """[row][generated id]: the log-probabilities of every generated id of ``sequences`` (prompt + ids)."""
            picked = self.picked + ([self.last.gather(1, sequences[:, -1:])[:, 0]] if self.last is not None else [])
            return torch.stack(picked, dim=1).tolist() if picked else [[] for _ in range(sequences.shape[0])]

    class CotscaleHFLM(compat.HFHooks, CapturingBackend, HFLM):
        score_window = 1  # HFLM keeps (context + continuation)[-(max_length + 1):]

        def __init__(self, *args, shared_prefix: bool = True, **kwargs):
            self.detected_batch_sizes: dict[int, int] = {}  # longest request length -> detected batch size
            self.shared_prefix = bool(shared_prefix)  # score each shared token prefix once (cotscale.lm.prefix)
            super().__init__(*args, **kwargs)
            accelerator = getattr(self, "accelerator", None)
            if accelerator is not None and accelerator.num_processes > 1 and self.world_size == 1:
                # lm-eval shards the documents over `accelerate launch` processes only when it counts more than one
                # GPU; CPU processes (gloo) are just as data parallel, and otherwise every one evaluates everything
                compat.shard_over_processes(self, accelerator.process_index, accelerator.num_processes)

        def score_shared(self, requests):
            if self.backend != "causal":
                return {}
            answers, computed = prefix.answer(self, requests, self.shared_prefix)
            if self.capturing is not None:
                self.capturing.computed.extend(computed)
            return answers

        def detect_batch_size(self, requests=None, pos: int = 0) -> int:
            # batch_size: auto. lm-eval detects the largest batch anew in every loglikelihood / generate_until call;
            # cotscale calls once per chunk of requests (see request_chunk), so reuse a size found for requests at
            # least as long (a batch that fits longer sequences fits shorter ones).
            if requests:
                _, context, continuation = requests[pos]
                length = len((context + continuation)[-(self.max_length + 1):][:-1])
            else:
                length = self.max_length
            found = self.detected_batch_sizes
            fits = [(known, size) for known, size in found.items() if known >= length]
            if fits:
                return min(fits)[1]
            found[length] = size = self.upstream_detect_batch_size(requests, pos)
            return size

        def generate_ids(self, context, max_length, stop, **generation_kwargs):
            # HFLM._model_generate, plus: per-row stop criteria, beams / k samples, token capture
            call = self.capturing
            mode, k = (call.mode.search, call.mode.k) if call is not None else (SINGLE.search, SINGLE.k)
            after_content = bool(generation_kwargs.pop(STOP_AFTER_CONTENT, False))  # cotscale's, not transformers'
            attention_mask = generation_kwargs.get("attention_mask")
            generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
            do_sample = generation_kwargs.get("do_sample")
            if (temp := generation_kwargs["temperature"]) == 0.0 and do_sample is None:
                generation_kwargs["do_sample"] = do_sample = False
            if do_sample is False and temp == 0.0:
                generation_kwargs.pop("temperature", None)
            n_return = 1
            if mode == "beam":
                generation_kwargs.pop("temperature", None)
                # transformers' beam search with its defaults stated, the search cotscale.lm.beam replays on vLLM
                generation_kwargs.update(num_beams=k, num_return_sequences=k, do_sample=False,
                                         length_penalty=LENGTH_PENALTY, early_stopping=EARLY_STOPPING)
                n_return = k
            elif mode == "sample" and k > 1:
                generation_kwargs["num_return_sequences"] = n_return = k
            prompt_len = context.shape[1]
            criteria = transformers.StoppingCriteriaList([PerRowStop(self.tokenizer, stop, prompt_len, after_content)])
            # beams are reordered between steps, so a row's ids are not one path through the recorded steps
            recorder = SequenceLogprob() if call is not None and mode != "beam" else None
            if recorder is not None:
                generation_kwargs["logits_processor"] = transformers.LogitsProcessorList([recorder])
            with torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                enabled=self.mixed_precision_dtype is not None):
                out = self.model.generate(input_ids=context, max_length=max_length, stopping_criteria=criteria,
                                          pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
                                          **generation_kwargs)
            if call is not None:
                rows = out.tolist()
                # generate() stops a row at any id of the generation config's eos_token_id (one or several)
                ends = eos_ids(self.model.generation_config.eos_token_id, self.eot_token_id)

                def decode(ids):
                    return self.tokenizer.decode(ids, skip_special_tokens=False)

                start = prompt_len if self.backend == "causal" else 0  # seq2seq outputs hold no prompt
                token_logprobs = recorder.per_token(out) if recorder is not None else None
                for i in range(context.shape[0]):
                    prompt = context[i]
                    prompt = (prompt[attention_mask[i].bool()] if attention_mask is not None else prompt).tolist()
                    seqs = []
                    for j in range(n_return):
                        gen = rows[i * n_return + j][start:]
                        text = response_text(self.tok_decode(gen), stop, after_content)
                        n, ended = count_to_stop(gen, stop, ends, self.tokenizer.pad_token_id, decode, after_content)
                        logprob = sum(token_logprobs[i * n_return + j][:n]) if token_logprobs is not None else None
                        seqs.append(GeneratedSequence(text, n, ended, tuple(gen[:n]), logprob))
                    call.generations.append(Generation(tuple(prompt), seqs))
            return out[::n_return] if n_return > 1 else out

    _CLASS.append(CotscaleHFLM)
    return CotscaleHFLM
