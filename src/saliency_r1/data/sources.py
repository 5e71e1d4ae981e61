"""Several data sources mixed into one sample list: the ``sources:`` list of the SFT and GRPO configs.

A source names a file, folder, glob, ``save_to_disk`` folder or hub id in the local HF cache and
its loader format (:data:`~.loaders.FORMATS`); ``split``, ``data_files`` and ``columns`` pick and
rename what is read (see :func:`~.loaders.load` and ``docs/datasets.md``).
``weight`` scales how many samples a source contributes: ``n_i = round(weight_i * len_i)``, drawn
without replacement when ``weight <= 1`` and with whole repeats plus a remainder drawn without
replacement when ``weight > 1`` (deterministic in ``seed``). Weights are multipliers, not
probabilities: ``[1, 1]`` keeps both sources whole, as concatenating the two files would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import InputError
from .loaders import FORMATS, load


@dataclass
class DataSource:
    """One dataset to read with :func:`saliency_r1.data.load`."""

    path: str = field(metadata={"help": "data file, folder, glob, save_to_disk folder or hub id (local cache)"})
    format: str = field(metadata={"help": f"loader format: {', '.join(FORMATS)}"})
    image_root: Optional[str] = field(default=None, metadata={"help": "folder image paths are relative to"})
    limit: Optional[int] = field(default=None, metadata={"help": "read at most this many rows"})
    weight: float = field(default=1.0, metadata={"help": "sample multiplier: n = round(weight * rows kept)"})
    options: dict = field(default_factory=dict, metadata={"help": "extra options of saliency_r1.data.load"})
    split: str = field(default="train", metadata={
        "help": "split of a folder, save_to_disk DatasetDict or hub dataset (default train)"})
    data_files: Optional[list] = field(default=None, metadata={
        "help": "file patterns relative to the folder or hub snapshot, instead of the split's files "
                "(e.g. [saliency_r1_llava_cot_full.json]); a single string is accepted"})
    columns: dict = field(default_factory=dict, metadata={
        "help": "rename columns before parsing, {their_name: our_name}"})
    revision: Optional[str] = field(default=None, metadata={
        "help": "hub snapshot of a hub id (branch, tag or commit present in the local cache; default main)"})


def _weighted(samples: list, weight: float, rng: random.Random) -> list:
    n = round(weight * len(samples))
    whole, rest = divmod(n, len(samples)) if samples else (0, 0)
    return samples * whole + rng.sample(samples, rest)


def load_sources(sources: list[DataSource], seed: int = 0) -> list[dict]:
    """The samples of every source, each scaled by its weight, in source order.

    >>> import tempfile, pathlib
    >>> from saliency_r1.data import export, generate
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = export(generate(None, 4), d)
    >>> len(load_sources([DataSource(str(d), "shapes"), DataSource(str(d), "shapes", weight=0.5)]))
    6
    """
    if not sources:
        raise InputError("data.sources is empty; name at least one {path, format} source")
    rng = random.Random(seed)
    out: list[dict] = []
    for i, src in enumerate(sources):
        if not src.weight >= 0 or src.weight != src.weight:
            raise InputError(f"data.sources[{i}].weight is {src.weight}; use a number >= 0")
        opts: dict[str, Any] = dict(src.options)
        if src.limit is not None:
            opts["limit"] = src.limit
        result = load(src.path, format=src.format, image_root=src.image_root, split=src.split,
                      data_files=src.data_files, columns=src.columns or None, revision=src.revision, **opts)
        if not result.samples:
            raise InputError(f"no usable sample in {src.path} ({result.summary()}); check the path and the format")
        out.extend(_weighted(list(result.samples), float(src.weight), rng))
    return out


__all__ = ["DataSource", "load_sources"]
