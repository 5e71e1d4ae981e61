"""The project's documented errors. A user error is one line that names the problem and the fix."""

from __future__ import annotations


class SaliencyR1Error(Exception):
    """Base class of every error this package raises on purpose (the CLI prints it as one line)."""


class UnsupportedModelError(SaliencyR1Error):
    """The model class has no spec in the registry."""


class InputError(SaliencyR1Error, ValueError):
    """Bad user input: an image, a box, a response, a file."""


class NumericalError(SaliencyR1Error, FloatingPointError):
    """The model's own forward produced NaN/inf (reported, never propagated into maps or rewards)."""


class CaptureError(SaliencyR1Error, RuntimeError):
    """A capture context ended without capturing anything (the hooks never fired)."""


__all__ = ["SaliencyR1Error", "UnsupportedModelError", "InputError", "NumericalError", "CaptureError"]
