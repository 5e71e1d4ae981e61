"""Experiments: the demo's stages (:mod:`.pipeline`), its whole run (:mod:`.demo`) and its report
(:mod:`.report`). Above ``evaluation`` and ``viz`` in the pipeline order, below ``cli`` (which only parses
arguments and calls :func:`saliency_r1.experiments.demo.run_demo`). Configs are read from the package's
``configs/`` through :func:`saliency_r1.config_io.packaged_config`, so a non-editable install works.

>>> from saliency_r1.experiments import PRESETS
>>> sorted(PRESETS)
['full', 'quick']
"""

from __future__ import annotations

from .pipeline import ARMS, PRESETS, Preset, load_preset, world

__all__ = ["ARMS", "PRESETS", "Preset", "load_preset", "world"]
