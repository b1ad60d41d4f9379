"""Token counting from the backend's ids: where a generated sequence ends, and matching prompts to captured ids."""

from __future__ import annotations

from cotscale.usage import stop_index

# the generation argument (lm-eval gen_kwargs) that carries the strategy key stop_after_content to both backends
STOP_AFTER_CONTENT = "stop_after_content"


def count_to_stop(ids: list[int], stops: list[str], eos_ids: set[int] | frozenset[int], pad_id: int | None,
                  decode, after_content: bool = False) -> tuple[int, bool]:
    """(tokens of one generated sequence up to where its returned text ends, whether it ended before its budget).

    The first of any EOS id ends the sequence (counted); a stop sequence ends it at the token that completes it
    (counted, as vLLM counts it); a pad id that is not an EOS id ends it uncounted (a batched HF generation pads a
    row once it has finished). A sequence that meets none of these ran to its max_gen_toks budget: every id counts
    and it did not end. ``decode`` must keep special tokens (stop strings may be special tokens). With
    ``after_content`` (stop_after_content) only a stop after the first non-whitespace text counts
    (:func:`cotscale.usage.stop_index`).
    """
    end, ended = len(ids), False
    for j, token in enumerate(ids):
        if token in eos_ids:
            end, ended = j + 1, True
            break
        if token == pad_id:
            end, ended = j, True
            break
    stops = [s for s in stops if s]
    if not stops or end == 0:
        return end, ended

    def hit(n: int) -> bool:
        return stop_index(decode(ids[:n]), stops, after_content) is not None

    if not hit(end):
        return end, ended
    lo, hi = 1, end  # smallest n whose prefix contains a stop sequence
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo, True


def stop_lookback(stops: list[str], encode) -> int:
    """How many trailing ids to decode to see whether a sequence now ends in a stop sequence (as lm-eval checks)."""
    return max([len(encode(s)) + 2 for s in stops if s] or [0])


def ends_in_stop(ids: list[int], stops: list[str], decode, lookback: int, after_content: bool = False) -> bool:
    """Whether the last ``lookback`` generated ids, decoded with special tokens, contain a stop sequence: the
    per-sequence stop criterion of both backends' beam search (HF stopping criteria, :mod:`cotscale.lm.beam`). With
    ``after_content`` a stop in the tail counts only if the whole sequence has one after its first non-whitespace
    text (decoded whole only then: the tail check is the cheap necessary condition)."""
    stops = [s for s in stops if s]
    if not (stops and ids) or not any(s in decode(ids[-lookback:]) for s in stops):
        return False
    return not after_content or stop_index(decode(ids), stops, True) is not None


def response_text(text: str, stops: list[str], after_content: bool = False) -> str:
    """A generation's returned text: cut at its first stop sequence by lm-eval's postprocess_generated_text, or with
    ``after_content`` at the first stop after its first non-whitespace text (lm-eval's cut knows no such mode)."""
    if after_content:
        return text[:stop_index(text, stops, True)]
    from lm_eval.models.utils import postprocess_generated_text

    return postprocess_generated_text(text, stops, None)


def eos_ids(*sources) -> frozenset[int]:
    """Every EOS id named by the sources (ints, lists of ints or None), e.g. a generation config's eos_token_id
    (one id or several) and the tokenizer's."""
    out: set[int] = set()
    for source in sources:
        if source is None:
            continue
        out.update(int(i) for i in (source if isinstance(source, (list, tuple, set, frozenset)) else [source]))
    return frozenset(out)


def common_suffix(a: tuple, b: tuple) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n


def common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def new_tokens(sequences: list, computed: list = ()) -> list[int]:
    """Tokens each scored sequence of ONE document adds to what is already computed, as a prefix cache counts them.

    ``sequences`` are the token ids the backend scores (context + continuation, after its truncation), in request
    order; ``computed`` are id sequences already paid for (a hybrid document's generation prompt + rationale). A
    sequence's new tokens are its length minus its longest common prefix with any earlier sequence or computed one:
    the document's shared context is counted once (on its first request), each choice's own continuation and
    choice-specific context apart.
    """
    seen = [tuple(c) for c in computed]
    out = []
    for seq in sequences:
        seq = tuple(seq)
        out.append(len(seq) - max((common_prefix(seq, s) for s in seen), default=0))
        seen.append(seq)
    return out
