"""The response grammar, once: writing, parsing, spans from ids, answer extraction, normalisation, matching.

Every stage that reads a response uses this module (the rewards, the tracer's spans, the data loaders,
training, evaluation and the demo), so a "correct", "well formed" or "answer" means one thing everywhere.
It imports nothing from the pipeline stages (a stage-0 module, like :mod:`saliency_r1.errors`).

**Format** (method.md §4). The models are trained to write ``<think>{reasoning}</think>{answer}``
(:func:`format_response`). A response is *well formed* (:func:`parse_response`, the format reward's
rule) when, after trailing end-of-turn markers and surrounding whitespace are removed:

1. it starts with ``<think>``;
2. it holds exactly one ``<think>`` and exactly one ``</think>``, in that order: doubled blocks
   (``<think>a</think><think>b</think>x``) and nested tags (``<think>a<think>b</think></think>x``)
   are malformed;
3. the reasoning between the tags is not blank;
4. a non-blank answer follows ``</think>``; an ``<answer>…</answer>`` wrapper is allowed and removed.

**Answer** (:func:`extract_answer`, read leniently so that each reward measures one thing): the text
after the last ``</think>`` (``<answer>`` tags removed), or the whole response, tags removed, when
there is no ``</think>``.

**Matching** (:func:`answers_match`, the accuracy reward's rule) after :func:`normalize_answer`: lower
case; a leading "the answer is" / "answer:" dropped; punctuation dropped; articles (a, an, the)
dropped; number words zero..twenty and the tens up to ninety become digits; numbers canonical
(``"02"``, ``"2.0"`` → ``"2"``, ``"1,000"`` → ``"1000"``). Then:

- multiple choice: a ground truth ``"B"``, ``"(B)"``, ``"B)"`` or ``"B. text"`` is letter ``B``; a
  prediction ``"B"``, ``"(B)"``, ``"B."``, ``"B: text"``, ``"(B) text"`` names letter ``B`` (upper case
  only, so the article "a" is never read as a choice); without a letter, a non-empty normalised
  prediction may match the choice's text or the truth itself (a one-letter label ``"K"`` read as ``"k"``);
- yes/no: a ground truth ``yes``/``no`` matches a prediction whose first word is the same;
- otherwise the normalised strings must be equal.

:func:`is_correct` = a non-empty extracted answer that matches.

**Spans from ids** (:func:`find_spans`, never by re-tokenising text). Each response token's character
range is read off incremental decodes of the ids; the tags are then found in the decoded text. This
works whether ``<think>`` is one added token (the tiny model, Qwen3) or several BPE pieces
(Qwen2.5-VL). A token that straddles a tag is in neither span.
Θ = tokens strictly between the first ``<think>`` and the first ``</think>`` after it;
Α = tokens after that ``</think>`` up to, not including, the first end-of-turn token
(:func:`end_ids`: the generation config's eos ids and the tokenizer's eos).

**Dataset responses** (:func:`split_reasoning`, for loaders of published data, lenient): the first
``<think>…</think>`` block is the reasoning, the answer follows (inside ``<answer>…</answer>`` when
present); LLaVA-CoT's ``<CONCLUSION>…</CONCLUSION>`` is the answer and the stages before it the
reasoning; otherwise the whole text is the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError

OPEN, CLOSE = "<think>", "</think>"
END_MARKERS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")
_ANSWER_TAGS = re.compile(r"^\s*<answer>(.*?)</answer>\s*$", re.S)


# ---------------------------------------------------------------------------------------------- writing
def format_response(reasoning: str | None, answer: str) -> str:
    """The response text the models are trained to produce: ``<think>{reasoning}</think>{answer}``.

    ``None`` reasoning gives an empty think block (the format reward still checks the tags).

    >>> format_response("The circle is red.", "red")
    '<think>The circle is red.</think>red'
    """
    return f"<think>{reasoning or ''}</think>{answer}"


# ---------------------------------------------------------------------------------------------- parsing
def strip_end(text: str) -> str:
    """The text without surrounding whitespace and trailing end-of-turn markers.

    >>> strip_end(" red<|im_end|> ")
    'red'
    """
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in END_MARKERS:
            if text.endswith(marker):
                text, changed = text[: -len(marker)].rstrip(), True
    return text


def _unwrap_answer(text: str) -> str:
    m = _ANSWER_TAGS.match(text)
    return (m.group(1) if m else text).strip()


@dataclass(frozen=True)
class ParsedResponse:
    """A response split by the format rules (module docstring); ``problem`` says why it is malformed."""

    reasoning: str | None
    answer: str | None
    problem: str | None = None

    @property
    def well_formed(self) -> bool:
        return self.problem is None


def parse_response(text: str) -> ParsedResponse:
    """Split a response into reasoning and answer under the strict format rules.

    >>> parse_response("<think>red circle</think> red").answer
    'red'
    >>> parse_response("<think>a</think><think>b</think>x").problem
    'more than one <think> or </think> tag'
    """
    t = strip_end(text)
    if not t.startswith(OPEN):
        return ParsedResponse(None, None, "does not start with <think>")
    if t.count(OPEN) != 1 or t.count(CLOSE) != 1:
        return ParsedResponse(None, None, "more than one <think> or </think> tag" if t.count(CLOSE) else
                              "no </think> tag")
    reasoning, answer = t[len(OPEN):].split(CLOSE, 1)
    answer = _unwrap_answer(answer)
    if not reasoning.strip():
        return ParsedResponse(None, answer or None, "empty reasoning")
    if not answer:
        return ParsedResponse(reasoning.strip(), None, "no answer after </think>")
    return ParsedResponse(reasoning.strip(), answer)


def well_formed(text: str) -> bool:
    """Whether ``text`` is well formed (the format reward's rule; module docstring).

    >>> well_formed("<think>x</think>red"), well_formed("<think></think>red"), well_formed("red")
    (True, False, False)
    """
    return parse_response(text).well_formed


def extract_answer(text: str) -> str:
    """The answer read leniently: after the last ``</think>``, else the whole text without tags.

    >>> extract_answer("<think>a</think><think>b</think> <answer>Blue</answer>")
    'Blue'
    >>> extract_answer("just 3")
    'just 3'
    """
    t = strip_end(text)
    if CLOSE in t:
        t = t.rsplit(CLOSE, 1)[1]
    return _unwrap_answer(t.replace(OPEN, "").replace(CLOSE, ""))


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_CONCLUSION = re.compile(r"<CONCLUSION>(.*?)</CONCLUSION>", re.DOTALL | re.IGNORECASE)
_ANY_TAG = re.compile(r"</?[A-Za-z]+>")


def split_reasoning(text: str) -> tuple[str | None, str]:
    """``(reasoning or None, raw answer text)`` of a dataset's response (module docstring; lenient).

    >>> split_reasoning("<think>It is red.</think><answer>red</answer>")
    ('It is red.', 'red')
    >>> split_reasoning("<SUMMARY>s</SUMMARY><CONCLUSION>B</CONCLUSION>")
    ('s', 'B')
    """
    reasoning, rest = None, text
    m = _THINK.search(text)
    if m:
        reasoning, rest = m.group(1).strip(), text[m.end():]
    m = _ANSWER.search(rest) or (None if reasoning is not None else _ANSWER.search(text))
    if m:
        return reasoning, m.group(1)
    m = _CONCLUSION.search(rest)
    if m:
        before = _ANY_TAG.sub(" ", rest[: m.start()])
        return reasoning or (" ".join(before.split()) or None), m.group(1)
    return reasoning, rest


# --------------------------------------------------------------------------------------------- matching
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty").split()
NUMBER_WORDS: dict[str, str] = {w: str(i) for i, w in enumerate(_UNITS)}
NUMBER_WORDS.update({w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)})
ARTICLES = frozenset({"a", "an", "the"})
_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is\b|:)\s*", re.I)
_TOKENS = re.compile(r"\d+(?:\.\d+)?|[^\W_]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_GT_CHOICE = re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.:)]\s*(.*))?$", re.S)
_PRED_CHOICE = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:\s*$|[.:)]))")


def _canon_number(tok: str) -> str:
    whole, _, frac = tok.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def normalize_answer(text: str) -> str:
    """Normalised answer text (module docstring).

    >>> normalize_answer("The answer is: Two red circles.")
    '2 red circles'
    >>> normalize_answer("1,000.50")
    '1000.5'
    """
    t = _PREFIX.sub("", str(text).strip().lower())
    out = []
    for tok in _TOKENS.findall(_THOUSANDS.sub("", t)):
        if tok in ARTICLES:
            continue
        if tok in NUMBER_WORDS:
            tok = NUMBER_WORDS[tok]
        elif tok[0].isdigit():
            tok = _canon_number(tok)
        out.append(tok)
    return " ".join(out)


def _choice(prediction: str) -> str | None:
    m = _PRED_CHOICE.match(_PREFIX.sub("", prediction.strip()))
    return (m.group(1) or m.group(2)) if m else None


def answers_match(prediction: str, truth: str) -> bool:
    """Whether a predicted answer matches the ground truth under the module's rules.

    >>> [answers_match(p, t) for p, t in [("(B)", "B"), ("B. red", "B"), ("a red one", "A"), ("Yes, it is.", "yes"),
    ...                                   ("three", "3"), ("The Circle", "circle"), ("red", "B. red"), ("no", "yes"),
    ...                                   ("k", "K"), ("a", "A")]]
    [True, True, False, True, True, True, True, False, True, False]
    """
    gt = _GT_CHOICE.match(truth)
    if gt:
        letter = _choice(prediction)
        if letter is not None:
            return letter == gt.group(1)
        p = normalize_answer(prediction)  # no letter: the choice's text, or the truth as text ('k' for 'K')
        return bool(p) and p in {normalize_answer(t) for t in (gt.group(2), truth) if t}
    p, t = normalize_answer(prediction), normalize_answer(truth)
    if t in ("yes", "no"):
        return p.split(" ", 1)[0] == t
    return p == t


def is_correct(response: str, truth: str) -> bool:
    """The accuracy reward's rule on a whole response: a non-empty :func:`extract_answer` that matches.

    >>> is_correct("<think>x</think> Two.", "2"), is_correct("<think>x</think>", "red")
    (True, False)
    """
    pred = extract_answer(response)
    return bool(pred) and answers_match(pred, str(truth))


# ------------------------------------------------------------------------------------------ spans from ids
@dataclass(frozen=True)
class Spans:
    """Spans relative to the response (token indices ``[start, end)``), and why one is missing."""

    think: tuple[int, int] | None
    answer: tuple[int, int] | None
    reason: str | None = None

    @property
    def complete(self) -> bool:
        """Both Θ and Α were found (the holistic map is defined)."""
        return self.think is not None and self.answer is not None

    def shifted(self, offset: int) -> "Spans":
        """The same spans as absolute positions (``offset`` = response start).

        >>> Spans((0, 2), (3, 4)).shifted(10)
        Spans(think=(10, 12), answer=(13, 14), reason=None)
        """
        move = (lambda s: (s[0] + offset, s[1] + offset) if s is not None else None)
        return Spans(move(self.think), move(self.answer), self.reason)


def end_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-turn ids: ``model.generation_config``'s eos ids (when it has one) and the tokenizer's eos.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> model, proc = build_tiny()
    >>> sorted(proc.tokenizer.convert_ids_to_tokens(sorted(end_ids(model, proc.tokenizer))))
    ['<|endoftext|>', '<|im_end|>']
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    ids.add(tokenizer.eos_token_id)
    return frozenset(int(i) for i in ids if i is not None)


def end_of_turn_id(tokenizer) -> int:
    """The id that closes an assistant turn when writing one: ``<|im_end|>`` when the vocabulary has it, else eos.

    >>> from saliency_r1.models.tiny import build_tiny
    >>> tok = build_tiny()[1].tokenizer
    >>> tok.convert_ids_to_tokens(end_of_turn_id(tok))
    '<|im_end|>'
    """
    tid = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if tid is None or tid == tokenizer.unk_token_id:
        tid = tokenizer.eos_token_id
    if tid is None:
        raise InputError("the tokenizer has neither <|im_end|> nor an eos token; set an eos token on the tokenizer")
    return int(tid)


def cut_at_end(ids: list[int], ends: frozenset[int] | set[int]) -> list[int]:
    """The ids up to and including the first end-of-turn id.

    >>> cut_at_end([5, 6, 2, 0, 0], frozenset({2}))
    [5, 6, 2]
    """
    for k, t in enumerate(ids):
        if t in ends:
            return ids[:k + 1]
    return ids


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


__all__ = ["OPEN", "CLOSE", "END_MARKERS", "format_response", "strip_end", "ParsedResponse", "parse_response",
           "well_formed", "extract_answer", "split_reasoning", "NUMBER_WORDS", "ARTICLES", "normalize_answer",
           "answers_match", "is_correct", "Spans", "end_ids", "end_of_turn_id", "cut_at_end", "char_offsets", "find_spans"]
