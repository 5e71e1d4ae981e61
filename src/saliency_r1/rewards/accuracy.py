"""R_accuracy (method.md §4): normalised exact match, or an LLM judge when one is configured.

The answer is read after ``</think>`` (:func:`saliency_r1.grammar.extract_answer`) and compared with
the ``answer`` column by :func:`saliency_r1.grammar.answers_match` (normalisation and the
multiple-choice and yes/no rules are documented there): :func:`saliency_r1.grammar.is_correct`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import InputError
from ..grammar import answers_match, extract_answer, is_correct
from ._text import completion_text, last_user_text

logger = logging.getLogger(__name__)


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
        out.append(None if t is None else float(is_correct(completion_text(c), str(t))))
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


__all__ = ["accuracy_reward", "AccuracyReward"]
