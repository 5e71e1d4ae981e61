"""The one place image files are opened: header checks, a pixel cap before decoding, finite pixels.

``Image.open`` reads only the header, so the size is known before any pixel is decoded. Then:

* an image declaring more than ``2 x PIL.Image.MAX_IMAGE_PIXELS`` (~179 MP; a 74-byte PNG can declare
  100000 x 100000) is refused: PIL calls it a decompression bomb;
* an image above the pixel cap ``max_pixels`` (default :data:`MAX_PIXELS` = 4 x Qwen-VL's processor
  ``max_pixels`` 12,845,056 = 51,380,224 px; override with ``$SALIENCY_R1_MAX_IMAGE_PIXELS``) is
  downscaled by the integer factor ``k = ceil(sqrt(W·H / max_pixels))`` to ``(ceil(W/k), ceil(H/k))``.
  A JPEG is decoded at reduced size (``Image.draft``, the DCT scales 1/2, 1/4, 1/8), so its full-size
  pixels never exist; other formats are decoded once at full size, which is allowed only up to
  ``PIL.Image.MAX_IMAGE_PIXELS`` (~89.5 MP, i.e. at most ~360 MB for RGBA), then reduced at once.
  The processor resizes every image to at most its own ``max_pixels`` anyway, so nothing the model
  sees is lost; the peak memory of an open is bounded by the decode limit, not by the file;
* float images (mode ``F``: float TIFFs) holding NaN or infinity are refused.

Every refusal is an :class:`ImageFileError`, an :class:`~saliency_r1.errors.InputError` (one line,
exit 2 in the CLI) that is also an ``OSError``, so code that already treats unreadable files as
``OSError`` (the dataset loaders skip such rows) handles these too.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator, Union

from .errors import InputError

QWEN_MAX_PIXELS = 12_845_056
"""Qwen2-VL / Qwen2.5-VL image processor ``max_pixels`` (28 x 28 x 16384)."""

MAX_PIXELS = 4 * QWEN_MAX_PIXELS
"""Default pixel cap: larger images are downscaled while opened (see the module docstring)."""

ORIGINAL_SIZE = "saliency_r1_original_size"
"""``image.info`` key holding ``(W, H)`` of the file when the image was downscaled on opening."""

Source = Union[str, Path, IO[bytes]]


class ImageFileError(InputError, OSError):
    """An image file that is refused: unreadable, a decompression bomb, too large, or non-finite."""


def pixel_cap() -> int:
    """The pixel cap: ``$SALIENCY_R1_MAX_IMAGE_PIXELS`` when set to a positive integer, else :data:`MAX_PIXELS`.

    >>> pixel_cap() == MAX_PIXELS or "SALIENCY_R1_MAX_IMAGE_PIXELS" in os.environ
    True
    """
    raw = os.environ.get("SALIENCY_R1_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        cap = int(raw)
    except ValueError:
        cap = 0
    if cap < 1:
        raise InputError(f"SALIENCY_R1_MAX_IMAGE_PIXELS={raw!r} is not a positive integer; unset it or give "
                         "a pixel count")
    return cap


def reduced_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """``(W, H)`` after the cap: unchanged when ``W·H <= max_pixels``, else divided by the integer ``k``.

    >>> reduced_size((9000, 9000), 51_380_224), reduced_size((640, 480), 51_380_224)
    ((4500, 4500), (640, 480))
    """
    w, h = size
    if w * h <= max_pixels:
        return w, h
    k = math.ceil(math.sqrt(w * h / max_pixels))
    while math.ceil(w / k) * math.ceil(h / k) > max_pixels:
        k += 1
    return math.ceil(w / k), math.ceil(h / k)


def _name(source: Source) -> str:
    return str(source) if isinstance(source, (str, Path)) else "embedded image"


@contextmanager
def open_header(source: Source) -> Iterator:
    """``PIL.Image.open`` with its failures (decompression bombs included) as :class:`ImageFileError`.

    Only the header is read; the size is checked against the decompression-bomb limit.

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (5, 4)).save(buf, "PNG")
    >>> with open_header(buf) as im:
    ...     im.size
    (5, 4)
    """
    from PIL import Image, UnidentifiedImageError

    name = _name(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except Image.DecompressionBombError as e:
        n = re.match(r"\D*(\d+)", str(e))
        declared = f"{int(n.group(1)):,} pixels" if n else "too many pixels"
        raise ImageFileError(f"{name} declares {declared}, over the decompression-bomb limit of "
                             f"{2 * Image.MAX_IMAGE_PIXELS:,}; pass a smaller image") from None
    except FileNotFoundError:
        raise ImageFileError(f"image file {name} does not exist; check the path") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f"{name} is not a readable image ({type(e).__name__}: {str(e)[:80]}); "
                             "pass a PNG/JPEG/WebP file") from None
    with im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageFileError(f"{name} declares a size of {w}x{h} pixels; pass a real image")
        yield im


def read_image(source: Source, max_pixels: int | None = None, downscale: bool = True):
    """Open, size-check, decode (downscaled to at most ``max_pixels``) and check an image file.

    Returns a loaded ``PIL.Image`` in the file's own mode (RGB conversion is the caller's); when it
    was downscaled, ``image.info[ORIGINAL_SIZE]`` holds the file's ``(W, H)``. With
    ``downscale=False`` an image over the cap is refused instead (for callers whose boxes are in the
    file's pixels, e.g. the dataset loaders).

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (300, 200)).save(buf, "PNG")
    >>> im = read_image(buf, max_pixels=100 * 100)
    >>> im.size, im.info[ORIGINAL_SIZE]
    ((100, 67), (300, 200))
    """
    from PIL import Image

    cap = pixel_cap() if max_pixels is None else int(max_pixels)
    name = _name(source)
    with open_header(source) as im:
        size = im.size
        target = reduced_size(size, cap)
        if target != size and not downscale:
            raise _over_cap(name, size, cap)
        if target != size and im.format in ("JPEG", "MPO"):
            im.draft(im.mode, target)  # decode at 1/2, 1/4 or 1/8 scale: never at full size
        decoded = im.size[0] * im.size[1]
        if decoded > Image.MAX_IMAGE_PIXELS:
            raise ImageFileError(f"{name} is {size[0]}x{size[1]} pixels, more than {Image.MAX_IMAGE_PIXELS:,} "
                                 f"can be decoded; downscale the file (the model uses at most {cap:,} pixels)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
            out = im.copy()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageFileError(f"{name} is not a readable image ({type(e).__name__}: {str(e)[:80]}); "
                                 "pass a PNG/JPEG/WebP file") from None
    out = _downscale(out, target)
    if target != size:
        out.info[ORIGINAL_SIZE] = size
    check_finite(out, name)
    return out


def _over_cap(name: str, size: tuple[int, int], cap: int) -> ImageFileError:
    return ImageFileError(f"{name} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the cap of {cap:,} "
                          "(SALIENCY_R1_MAX_IMAGE_PIXELS); downscale the file")


def header_size(source: Source, max_pixels: int | None = None) -> tuple[int, int]:
    """``(W, H)`` from the header only; a bomb, an unreadable file or a size over the cap is refused.

    >>> import io
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (5, 4)).save(buf, "PNG")
    >>> header_size(buf)
    (5, 4)
    """
    cap = pixel_cap() if max_pixels is None else int(max_pixels)
    with open_header(source) as im:
        if im.size[0] * im.size[1] > cap:
            raise _over_cap(_name(source), im.size, cap)
        return im.size


def _downscale(im, target: tuple[int, int]):
    """``im`` at ``target`` size: ``Image.reduce`` by an exact integer factor, else a box filter."""
    from PIL import Image

    if im.size == target:
        return im
    k = im.size[0] / target[0]
    if k == int(k) and (math.ceil(im.size[1] / k) == target[1]) and im.mode not in ("P", "1", "I;16", "I;16B",
                                                                                  "I;16L"):
        return im.reduce(int(k))
    if im.mode in ("P", "1"):
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    return im.resize(target, Image.Resampling.BOX)


def check_finite(im, name: str = "image") -> None:
    """Refuse a float image (mode ``F``) holding NaN or infinity.

    >>> from PIL import Image
    >>> check_finite(Image.new("F", (2, 2), float("nan")))
    Traceback (most recent call last):
    ...
    saliency_r1._images.ImageFileError: image holds non-finite pixel values (NaN or infinity); pass an image with finite pixels
    """
    if im.mode != "F":
        return
    import numpy as np

    if not np.isfinite(np.asarray(im)).all():
        raise ImageFileError(f"{name} holds non-finite pixel values (NaN or infinity); pass an image with "
                             "finite pixels")


def original_size(im) -> tuple[int, int]:
    """``(W, H)`` of the file an image was read from (its own size unless it was downscaled).

    >>> from PIL import Image
    >>> original_size(Image.new("RGB", (3, 2)))
    (3, 2)
    """
    return tuple(im.info.get(ORIGINAL_SIZE, im.size))


__all__ = ["MAX_PIXELS", "QWEN_MAX_PIXELS", "ORIGINAL_SIZE", "ImageFileError", "pixel_cap", "reduced_size",
           "open_header", "header_size", "read_image", "check_finite", "original_size"]
