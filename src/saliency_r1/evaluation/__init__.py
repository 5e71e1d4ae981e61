"""Evaluate saliency maps: faithfulness (deletion/insertion, method.md §5) and pointing (energy-PG, PG),
for Saliency-R1's maps and the baselines behind one interface (:data:`METHODS`).

>>> from saliency_r1.evaluation import METHODS, FaithfulnessConfig
>>> "ours" in METHODS and "gradcam" in METHODS, FaithfulnessConfig().levels
(True, (5.0, 15.0, 30.0))
"""

from __future__ import annotations

from .common import TARGETS, Example, loglik_from_embeds, prepare, visual_embeddings
from .faithfulness import FaithfulnessConfig, Reference, auc, deletion_insertion, normalise, reference
from .focus import focus_gap, paired_traces
from .likelihood import response_loglik
from .methods import DEFAULT_METHODS, METHODS, MethodUnavailable, compute_maps, parse_methods
from .perturb import BLANKS, make_blank, perturb, pixel_order, rank_pixels
from .quick import accuracy_and_pointing
from .runner import check_response, faithfulness_record, pointing_record, run_loop
from .tables import faithfulness_markdown, faithfulness_table, pointing_markdown, pointing_table
from .tam import rank_gaussian_filter

__all__ = [
    "METHODS", "DEFAULT_METHODS", "MethodUnavailable", "compute_maps", "parse_methods",
    "FaithfulnessConfig", "Reference", "reference", "deletion_insertion", "normalise", "auc",
    "response_loglik", "BLANKS", "make_blank", "perturb", "pixel_order", "rank_pixels",
    "TARGETS", "Example", "prepare", "visual_embeddings", "loglik_from_embeds",
    "faithfulness_record", "pointing_record", "check_response", "run_loop", "accuracy_and_pointing",
    "faithfulness_table", "faithfulness_markdown", "pointing_table", "pointing_markdown",
    "rank_gaussian_filter", "focus_gap", "paired_traces",
]
