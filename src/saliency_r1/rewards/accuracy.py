"""R_accuracy (method.md §4): normalised exact match, or an LLM judge when one is configured.

The answer is read after ``</think>`` (:func:`saliency_r1.rewards._text.extract_answer`) and compared
with the ``answer`` column. Normalisation (:func:`normalize_answer`): lower case; a leading
"the answer is" / "answer:" dropped; punctuation dropped; articles (a, an, the) dropped; number words
zero..twenty and the tens up to ninety become digits; numbers canonical (``"02"``, ``"2.0"`` → ``"2"``,
``"1,000"`` → ``"1000"``). Then (:func:`answers_match`):

- multiple choice: a ground truth ``"B"``, ``"(B)"``, ``"B)"`` or ``"B. text"`` is letter ``B``; a
  prediction ``"B"``, ``"(B)"``, ``"B."``, ``"B: text"``, ``"(B) text"`` names letter ``B`` (upper case
  only, so the article "a" is never read as a choice); without a letter, a non-empty normalised
  prediction may match the choice's text or the truth itself (a one-letter label ``"K"`` read as ``"k"``);
- yes/no: a ground truth ``yes``/``no`` matches a prediction whose first word is the same;
- otherwise the normalised strings must be equal.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..errors import InputError
from ._text import completion_text, extract_answer, last_user_text

logger = logging.getLogger(__name__)

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


def _answers(answer: Any, n: int) -> list:
    if answer is None:
        raise InputError("the accuracy reward needs an 'answer' column; add the ground-truth answers to the dataset")
    if isinstance(answer, str):
        answer = [answer] * n
    if len(answer) != n:
        raise InputError(f"got {len(answer)} answers for {n} completions; pass one answer per completion")
    return list(answer)


def accuracy_reward(prompts: Any = None, completions: Any = None, completion_ids: Any = None, answer: Any = None,
                    **kwargs: Any) -> list[float | None]:
    """``1.0`` when the answer after ``</think>`` matches the ``answer`` column, else ``0.0``.

    A row whose ground truth is None scores None (not scorable). TRL reward signature.

    >>> accuracy_reward(completions=["<think>x</think>Two", "<think>x</think>(C)", "<think>x</think>"],
    ...                 answer=["2", "B", "red"])
    [1.0, 0.0, 0.0]
    """
    completions = list(completions or [])
    truths = _answers(answer, len(completions))
    out: list[float | None] = []
    for c, t in zip(completions, truths):
        pred = extract_answer(completion_text(c))
        out.append(None if t is None else float(bool(pred) and answers_match(pred, str(t))))
    return out


accuracy_reward.__name__ = "accuracy"


class AccuracyReward:
    """R_accuracy as a callable: exact match, or an :class:`~saliency_r1.rewards.judge.LLMJudge`.

    With a judge: blank answers score 0 without a call; with ``shortcut_exact`` a normalised exact
    match scores 1 without a call; every other row asks the judge. A judge failure gives None for
    that row (TRL then ignores the row for this reward) and is counted in ``judge.stats``; the count
    per batch is logged as ``judge/failures`` through TRL's ``log_metric``.

    >>> AccuracyReward()(completions=["<think>x</think>yes"], answer=["yes"])
    [1.0]
    """

    def __init__(self, judge: Any = None, shortcut_exact: bool = True, name: str = "accuracy"):
        self.judge = judge
        self.shortcut_exact = shortcut_exact
        self.__name__ = name

    def __call__(self, prompts: Any = None, completions: Any = None, completion_ids: Any = None,
                 answer: Any = None, log_metric: Any = None, **kwargs: Any) -> list[float | None]:
        """One reward per completion in [0, 1]; None where the ground truth is missing or the judge failed."""
        if self.judge is None:
            return accuracy_reward(prompts, completions, completion_ids, answer=answer)
        completions = list(completions or [])
        truths = _answers(answer, len(completions))
        questions = [last_user_text(p) for p in (prompts or [None] * len(completions))]
        out: list[float | None] = [None] * len(completions)
        asks = []
        for i, (c, t) in enumerate(zip(completions, truths)):
            pred = extract_answer(completion_text(c))
            if t is None:
                continue
            if not pred:
                out[i] = 0.0
            elif self.shortcut_exact and answers_match(pred, str(t)):
                out[i] = 1.0
            else:
                asks.append((i, questions[i], str(t), pred))
        scores = self.judge.score_many([(q, t, p) for _, q, t, p in asks])
        for (i, *_), s in zip(asks, scores):
            out[i] = s
        failures = sum(s is None for s in scores)
        if log_metric is not None:
            log_metric("judge/failures", float(failures))
            log_metric("judge/calls", float(len(asks)))
        return out


__all__ = ["accuracy_reward", "AccuracyReward", "normalize_answer", "answers_match", "NUMBER_WORDS", "ARTICLES"]
