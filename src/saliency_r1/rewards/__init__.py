"""Reward functions for GRPO with TRL's signature ``reward(prompts, completions, completion_ids, **columns)``.

=====================  ===============================================================================
``format_reward``      R_format: 1 when ``<think>reasoning</think>answer`` is well formed (name ``format``)
``accuracy_reward``    R_accuracy by normalised exact match against the ``answer`` column (``accuracy``)
``AccuracyReward``     the same, or asking an :class:`LLMJudge` (OpenAI-compatible endpoint)
``SaliencyReward``     R_saliency: energy-PG of the completion's holistic map against its ``boxes``
=====================  ===============================================================================

Each has a stable ``__name__`` (``format``, ``accuracy``, ``saliency``), so TRL logs
``rewards/<name>/mean``. None means "not scorable" (TRL skips the row for that reward).
"""

from __future__ import annotations

from ..grammar import answers_match, extract_answer, normalize_answer, parse_response
from ._text import completion_text
from .accuracy import AccuracyReward, accuracy_reward
from .format import format_reward
from .judge import JudgeConfig, LLMJudge
from .saliency import SaliencyReward

__all__ = ["format_reward", "accuracy_reward", "AccuracyReward", "SaliencyReward", "LLMJudge", "JudgeConfig",
           "normalize_answer", "answers_match", "parse_response", "extract_answer", "completion_text"]
