"""The tracer's named options, torch-free (configs import them without loading the model stack).

Defaults are the paper's definitions (method.md §2); the alternatives exist for parity with the authors'
released code and are named as such.
"""

from __future__ import annotations

from ..errors import InputError

VARIANTS = ("full", "think", "answer", "attn")
"""Holistic-map variants (method.md §2): ``full`` is the thinking-bottleneck rollout."""

RELU = ("per_token", "after_sum")
"""Where the ReLU goes when token maps are summed into one map: on each token's map before the sum
(method.md, the paper; default) or once on the sum (the authors' released code)."""

THINK_QUERY_OFFSETS = (0, -1)
"""First-hop query of the bottleneck: the thinking token's own position (0, the paper) or the position
predicting it (-1, the authors' code)."""


def variant_field(variant: str) -> str:
    """The ``ExampleMaps`` / ``SaliencyResult`` field holding ``variant``'s map.

    >>> variant_field("full"), variant_field("attn")
    ('holistic', 'attn')
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return "holistic" if variant == "full" else variant


def check_options(relu: str, think_query_offset: int) -> None:
    """One-line InputErrors for an unknown ReLU placement or first-hop offset.

    >>> check_options("after_sum", -1)
    """
    if relu not in RELU:
        raise InputError(f"unknown relu placement {relu!r}; use one of {', '.join(RELU)}")
    if think_query_offset not in THINK_QUERY_OFFSETS:
        raise InputError(f"think_query_offset must be 0 (paper) or -1 (authors' code), not {think_query_offset!r}")


__all__ = ["VARIANTS", "RELU", "THINK_QUERY_OFFSETS", "variant_field", "check_options"]
