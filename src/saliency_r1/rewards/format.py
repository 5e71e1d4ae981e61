"""R_format (method.md §4): 1 when the reasoning is enclosed in ``<think></think>`` and an answer follows.

The exact rules (strict: a doubled or nested ``<think>`` block scores 0, so does blank reasoning or a
blank answer) are in :mod:`saliency_r1.grammar`. TRL logs the mean of this reward as
``rewards/format/mean``: that is the format rate of the batch.
"""

from __future__ import annotations

from typing import Any

from ..grammar import well_formed
from ._text import completion_text


def format_reward(prompts: Any = None, completions: Any = None, completion_ids: Any = None,
                  **kwargs: Any) -> list[float]:
    """``1.0`` per well-formed completion, else ``0.0`` (TRL reward signature; columns ignored).

    Completions are strings or TRL's conversational form ``[{"role": "assistant", "content": ...}]``.

    >>> format_reward(completions=["<think>it is red</think>red", "red", "<think>a</think><think>b</think>c",
    ...                            [{"role": "assistant", "content": "<think>x</think> <answer>B</answer>"}]])
    [1.0, 0.0, 0.0, 1.0]
    """
    return [1.0 if well_formed(completion_text(c)) else 0.0 for c in completions or []]


format_reward.__name__ = "format"

__all__ = ["format_reward"]
