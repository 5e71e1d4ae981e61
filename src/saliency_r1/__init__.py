"""saliency-r1: see where a vision-language model looks while it reasons, score it, train it to look there.

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

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "from_pretrained_objects",
    "SaliencyModel",
    "SaliencyResult",
    "holistic_maps",
    "tiny_checkpoint",
    "SaliencyR1Error",
    "InputError",
    "UnsupportedModelError",
    "__version__",
]
