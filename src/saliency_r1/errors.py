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


class WriteError(SaliencyR1Error, OSError):
    """A file could not be written (full disk, read-only file system, permissions, a file in the way)."""


__all__ = ["WriteError", "SaliencyR1Error", "UnsupportedModelError", "InputError", "NumericalError", "CaptureError"]
