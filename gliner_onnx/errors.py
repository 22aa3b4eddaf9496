"""The error hierarchy shared by the export and runtime stages.

Every error is also a builtin (`ValueError`, `RuntimeError`, ...) so callers that
catch the builtin keep working; catching `GlinerOnnxError` catches all of ours.
"""

from __future__ import annotations


class GlinerOnnxError(Exception):
    """Base class of every error raised by gliner-onnx."""


class ManifestError(GlinerOnnxError, ValueError):
    """An export directory is missing, damaged, foreign or from a newer format."""


class UnsupportedArchError(GlinerOnnxError, ValueError):
    """An architecture name is unknown, or known but not supported yet."""


class ExportError(GlinerOnnxError, RuntimeError):
    """The export could not be completed; nothing loadable was written."""


class ParityError(ExportError):
    """An exported graph disagrees with the torch reference beyond tolerance."""


class ProviderError(GlinerOnnxError, ValueError):
    """A requested ONNX Runtime execution provider is unavailable or fell back."""


class InferenceError(GlinerOnnxError, RuntimeError):
    """ONNX Runtime failed while running a graph."""


class HubError(GlinerOnnxError, ValueError):
    """A model could not be found or fetched on the Hugging Face Hub (or in its cache)."""
