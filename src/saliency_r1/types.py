"""Tensor shape aliases, written once.

Every reshape in the package carries a comment in these letters, e.g. ``# (B, H, R, V)``.

=====  ==============================================================
B      batch size
T      sequence length (prompt + response, after left padding)
H      query heads;  K  key/value heads;  G = H // K (GQA group size)
D      model width;  E  head size (d_h)
R      rows: positions whose attention rows are read (predicting positions)
V      visual token positions (one per merged patch, all images, sequence order)
J      thinking token positions (the rollout bottleneck)
N      response tokens; A answer tokens
h, w   merged grid of one image (grid_thw[1] // merge, grid_thw[2] // merge)
=====  ==============================================================
"""

from __future__ import annotations

from typing import TypeAlias

import torch

LongTensor: TypeAlias = torch.Tensor
FloatTensor: TypeAlias = torch.Tensor

Span: TypeAlias = "tuple[int, int]"
"""Absolute ``[start, end)`` positions in the traced sequence."""

Grid: TypeAlias = "tuple[int, int]"
"""Merged-patch grid ``(h, w)`` of one image."""

__all__ = ["LongTensor", "FloatTensor", "Span", "Grid"]
