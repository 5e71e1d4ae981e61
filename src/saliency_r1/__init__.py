"""saliency-r1: see where a vision-language model looks while it reasons, score it, train it to look there.

Shape letters, written once: every reshape in the package carries a comment in these letters, e.g.
``# (B, H, R, V)``.

=====  ==============================================================
B      batch size
T      sequence length (prompt + response, after left padding)
H      query heads;  K  key/value heads;  G = H // K (GQA group size)
D      model width;  E  head size (d_h)
R      rows: positions whose attention rows are read (predicting positions)
V      visual token positions (one per merged patch, all images, sequence order)
J      thinking token positions (the rollout bottleneck)
N      response tokens; A answer tokens
h, w   merged grid of one image (grid_thw[1] // merge, grid_thw[2] // merge), row-major
=====  ==============================================================

>>> import saliency_r1
>>> "load_model" in saliency_r1.__all__
True
"""

from __future__ import annotations

from .attribution.maps import holistic_maps
from .attribution.model import SaliencyModel, from_pretrained_objects, load_model
from .attribution.result import SaliencyResult
from .errors import InputError, SaliencyR1Error, UnsupportedModelError
from .models.tiny import tiny_checkpoint
from .scoring import score_result as score

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "from_pretrained_objects",
    "SaliencyModel",
    "SaliencyResult",
    "score",
    "holistic_maps",
    "tiny_checkpoint",
    "SaliencyR1Error",
    "InputError",
    "UnsupportedModelError",
    "__version__",
]
