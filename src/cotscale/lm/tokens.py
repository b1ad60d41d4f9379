"""Token counting from the backend's ids: where a generated sequence ends, and matching prompts to captured ids."""

from __future__ import annotations

def count_to_stop(ids: list[int], stops: list[str], eos_token_id: int | None, decode) -> int:
    """Tokens of one generated sequence up to where its returned text ends.

    The first EOS token ends the sequence (counted); a stop sequence ends it at the token that completes it
    (counted, as vLLM counts it). Padding and whatever a batched generation produced after that point do not count.
    ``decode`` must keep special tokens (stop strings may be special tokens).
    """
    end = len(ids)
    if eos_token_id is not None and eos_token_id in ids:
        end = ids.index(eos_token_id) + 1
    stops = [s for s in stops if s]
    if not stops or end == 0:
        return end

    def hit(n: int) -> bool:
        text = decode(ids[:n])
        return any(s in text for s in stops)

    if not hit(end):
        return end
    lo, hi = 1, end  # smallest n whose prefix contains a stop sequence
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def common_suffix(a: tuple, b: tuple) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n
