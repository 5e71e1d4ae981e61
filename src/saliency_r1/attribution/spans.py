"""Thinking and answer spans, found from the response ids (never by re-tokenising text).

Each response token's character range is read off incremental decodes of the ids; the tags are
then found in the decoded text. This works whether ``<think>`` is one added token (the tiny model,
Qwen3) or several BPE pieces (Qwen2.5-VL). A token that straddles a tag is in neither span.

Θ = tokens strictly between the first ``<think>`` and the first ``</think>`` after it;
Α = tokens after that ``</think>`` up to, not including, the first end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Spans:
    """Spans relative to the response (token indices ``[start, end)``), and why one is missing."""

    think: tuple[int, int] | None
    answer: tuple[int, int] | None
    reason: str | None = None

    def shifted(self, offset: int) -> "Spans":
        """The same spans as absolute positions (``offset`` = response start)."""
        move = (lambda s: (s[0] + offset, s[1] + offset) if s is not None else None)
        return Spans(move(self.think), move(self.answer), self.reason)


def char_offsets(tokenizer, ids: list[int]) -> list[int]:
    """``N + 1`` non-decreasing character offsets: token k covers ``text[off[k]:off[k+1]]``.

    >>> from saliency_r1.models.tiny import train_tokenizer, default_corpus
    >>> tok = train_tokenizer(default_corpus(200), 400)
    >>> ids = tok("<think>red</think>red")["input_ids"]
    >>> off = char_offsets(tok, ids)
    >>> off[0], off[-1]
    (0, 21)
    """
    out, last = [0], 0
    for k in range(1, len(ids) + 1):
        n = len(tokenizer.decode(ids[:k], skip_special_tokens=False, clean_up_tokenization_spaces=False))
        last = max(last, n)
        out.append(last)
    return out


def find_spans(tokenizer, response_ids: list[int], end_ids: set[int] | frozenset[int]) -> Spans:
    """Θ and Α of one response, as token indices into ``response_ids``.

    >>> from saliency_r1.models.tiny import train_tokenizer, default_corpus
    >>> tok = train_tokenizer(default_corpus(200), 400)
    >>> ids = tok("<think>it is red</think>red")["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    >>> s = find_spans(tok, ids, {ids[-1]})
    >>> tok.decode(ids[s.think[0]:s.think[1]]), tok.decode(ids[s.answer[0]:s.answer[1]])
    ('it is red', 'red')
    """
    n = len(response_ids)
    stop = next((k for k, t in enumerate(response_ids) if t in end_ids), n)
    ids = list(response_ids[:stop])
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    o = text.find(OPEN)
    if o < 0:
        return Spans(None, None, "the response has no <think> tag")
    c = text.find(CLOSE, o + len(OPEN))
    if c < 0:
        return Spans(None, None, "the response has no </think> after <think>")
    off = char_offsets(tokenizer, ids)
    think_lo, think_hi = o + len(OPEN), c
    inside = [k for k in range(len(ids)) if off[k] >= think_lo and off[k + 1] <= think_hi and off[k + 1] > off[k]]
    after = [k for k in range(len(ids)) if off[k] >= c + len(CLOSE) and off[k + 1] > off[k]]
    think = (inside[0], inside[-1] + 1) if inside else None
    answer = (after[0], stop) if after else None
    reason = None
    if think is None:
        reason = "the thinking span is empty"
    elif answer is None or not text[c + len(CLOSE):].strip():
        answer, reason = None, "the answer after </think> is empty"
    return Spans(think, answer, reason)


__all__ = ["Spans", "find_spans", "char_offsets", "OPEN", "CLOSE"]
