"""Per-row tools shared by the format parsers: the skip signal, image resolution, box cleaning."""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from PIL import Image, UnidentifiedImageError

from .._images import header_size, read_image
from ..grammar import split_reasoning
from . import _boxes


class Skip(Exception):
    """Raised by a parser to skip the current row: ``Skip(field, reason)``."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass
class Ctx:
    """What a parser needs besides the row: the image root, options, counters and the row number."""

    root: Path
    stem: str
    opts: dict[str, Any]
    row: int = 0  # the row number reported in LoadResult.skipped (counted across all parts)
    id_row: int = 0  # the row number within the current part (file), used in default ids
    file: Optional[Path] = None  # the data file being read (None for a datasets.Dataset part)
    clipped: int = 0
    filtered: int = 0
    notes: list[tuple[int, str, str]] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)  # per-load lookups (e.g. benchmark answers)
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def note(self, field_name: str, reason: str) -> None:
        """Report a problem with part of the row (e.g. one turn) while keeping the rest."""
        self.notes.append((self.row, field_name, reason))

    def default_id(self, suffix: str = "") -> str:
        """``{file stem}-{row}`` (+ suffix) for rows without an id."""
        return f"{self.stem}-{self.id_row or self.row}{suffix}"


_IMAGE_TAG = re.compile(r"<image>", re.IGNORECASE)


def strip_image_tags(text: Any, field_name: str = "question") -> str:
    """The text without ``<image>`` placeholders, stripped; Skip when missing or empty."""
    if not isinstance(text, str):
        raise Skip(field_name, f"expected a string, got {type(text).__name__}")
    out = _IMAGE_TAG.sub("", text).strip()
    if not out:
        raise Skip(field_name, "empty")
    return out


def answer_text(value: Any) -> str:
    """A non-empty answer string (numbers are accepted and written as text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Skip("answer", "missing" if value is None else f"expected a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise Skip("answer", "empty")
    return text


def resolve(ctx: Ctx, rel: Any) -> Path:
    """``rel`` joined to the image root; Skip when it escapes the root or the file is missing."""
    path = _inside(ctx, rel)
    if not path.is_file():
        raise Skip("image", f"file not found: {rel}")
    return path


def _inside(ctx: Ctx, rel: Any) -> Path:
    """Lexical join + containment check (``..`` may not climb out; symlinks inside are fine)."""
    if not isinstance(rel, str) or not rel.strip():
        raise Skip("image", "missing or not a string path")
    root = os.path.normpath(os.path.abspath(ctx.root))
    joined = os.path.normpath(os.path.join(root, rel.strip()))
    if os.path.commonpath([root, joined]) != root:
        raise Skip("image", f"path {rel!r} escapes image_root {root}")
    return Path(joined)


def resolve_first(ctx: Ctx, candidates: list[str]) -> Path:
    """The first candidate that exists inside the root; Skip naming all tried paths."""
    for rel in candidates:
        path = _inside(ctx, rel)
        if path.is_file():
            return path
    raise Skip("image", f"file not found (tried {', '.join(candidates)})")


def image_size(ctx: Ctx, path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header only (cached per path)."""
    key = str(path)
    if key not in ctx._sizes:
        try:
            ctx._sizes[key] = header_size(path)  # bombs, sizes over the cap: ImageFileError (an OSError)
        except (UnidentifiedImageError, OSError) as e:
            raise Skip("image", f"not a readable image: {path.name} ({type(e).__name__}: {str(e)[:200]})") from None
    return ctx._sizes[key]


def load_image(ctx: Ctx, value: Any, candidates: Optional[list[str]] = None) -> tuple[Union[str, Image.Image], int, int]:
    """``(image, width, height)`` from a path, a one-path list, a ``{"bytes", "path"}`` dict (a
    ``datasets.Image`` column) or a PIL image.

    A path stays a path (the absolute resolved one); embedded bytes become an in-memory PIL image.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise Skip("image", f"expected one image, got {len(value)}")
        value = value[0]
    if isinstance(value, Image.Image):
        return value, value.width, value.height
    if isinstance(value, dict):
        if value.get("bytes"):
            try:
                im = read_image(io.BytesIO(value["bytes"]), downscale=False)
            except (UnidentifiedImageError, OSError) as e:
                raise Skip("image", f"embedded bytes are not an image ({type(e).__name__}: {str(e)[:160]})") from None
            return im, im.width, im.height
        value = value.get("path")
    path = resolve_first(ctx, candidates) if candidates else resolve(ctx, value)
    w, h = image_size(ctx, path)
    return str(path), w, h


def check_dims(ctx: Ctx, row: dict, width: int, height: int) -> None:
    """Skip when the row's own width/height disagree with the file (its pixel boxes would be off)."""
    rw, rh = row.get("width"), row.get("height")
    if not ctx.opts.get("check_size", True) or rw is None or rh is None:
        return
    try:
        same = (int(rw), int(rh)) == (width, height)
    except (TypeError, ValueError):
        raise Skip("width/height", f"not integers: {rw!r}, {rh!r}") from None
    if not same:
        raise Skip("width/height", f"row says {rw}x{rh}, the image file is {width}x{height}")


def parse(value: Any, field_name: str = "boxes") -> list[list[float]]:
    """Boxes from any accepted layout; Skip with the reason when malformed."""
    if value is None:
        raise Skip(field_name, "missing")
    try:
        return _boxes.parse_boxes(value)
    except ValueError as e:
        raise Skip(field_name, str(e)) from None


def clean(ctx: Ctx, boxes: list[list[float]], width: int, height: int, field_name: str = "boxes") -> list[list[float]]:
    """Validate pixel boxes; clip those partly outside (counted), Skip the row on any bad box."""
    out = []
    for box in boxes:
        try:
            fixed, clipped = _boxes.clean_box(box, width, height)
        except ValueError as e:
            raise Skip(field_name, str(e)) from None
        ctx.clipped += int(clipped)
        out.append(fixed)
    return out


def convert(boxes: list[list[float]], fmt: str, width: int, height: int, field_name: str = "bbox") -> list[list[float]]:
    """Boxes of convention ``fmt`` ('pixels', 'normalised', 'square_padded') to pixels."""
    try:
        if fmt == "pixels":
            return boxes
        if fmt == "normalised":
            return [_boxes.normalised_to_pixels(b, width, height) for b in boxes]
        return [_boxes.square_padded_to_pixels(b, width, height) for b in boxes]
    except ValueError as e:
        raise Skip(field_name, str(e)) from None


def split_response(text: Any) -> tuple[Optional[str], str]:
    """``(reasoning, answer)`` of a dataset response (:func:`saliency_r1.grammar.split_reasoning`); a
    non-string value is the answer itself; Skip when the answer is missing or empty.
    """
    if not isinstance(text, str):
        return None, answer_text(text)
    reasoning, answer = split_reasoning(text)
    return reasoning, answer_text(answer)


__all__: list[str] = []
