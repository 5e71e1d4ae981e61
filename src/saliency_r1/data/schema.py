"""The one sample schema every data source produces, and the response format the models learn.

A sample is a plain ``dict`` with exactly these keys (:class:`Sample` types it):

==============  ================================================================================
``image``       ``str`` path of the image file, or a ``PIL.Image.Image`` held in memory
``question``    the question, without ``<image>`` placeholders
``answer``      the short ground-truth answer, never empty
``boxes``       evidence boxes ``[x1, y1, x2, y2]``, float pixels of the ORIGINAL image, continuous
                coordinates (pixel ``i`` spans ``[i, i + 1)``; the image spans ``[0, W] x [0, H]``);
                may be empty (no grounding, e.g. the LLaVA cold-start data)
``masks``       ``None``, or one polygon ``[[x, y], ...]`` (pixels) per evidence object;
                ``PIL.ImageDraw.polygon(points, fill=1)`` reproduces the object's pixels
``reasoning``   the thinking trace without the ``<think>`` tags, or ``None``
``source``      dataset name and family, ``/``-separated, e.g. ``"visual_cot/gqa"`` or
                ``"shapes/existence/popular/focused"``
``id``          a string unique within its source
``width``       ``int`` width of the original image in pixels
``height``      ``int`` height of the original image in pixels
==============  ================================================================================
"""

from __future__ import annotations

from typing import TypedDict, Union

from PIL import Image

from ..grammar import format_response  # the response format the models learn (re-exported)

SAMPLE_KEYS: tuple[str, ...] = (
    "image", "question", "answer", "boxes", "masks", "reasoning", "source", "id", "width", "height",
)


class Sample(TypedDict):
    """One grounded VQA sample (see the module docstring for the meaning of each key)."""

    image: Union[str, Image.Image]
    question: str
    answer: str
    boxes: list[list[float]]
    masks: Union[list[list[list[float]]], None]
    reasoning: Union[str, None]
    source: str
    id: str
    width: int
    height: int


__all__ = ["Sample", "SAMPLE_KEYS", "format_response"]
