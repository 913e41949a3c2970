"""jpegstudy: how JPEG compression hurts vision models, and what mitigates it."""

__version__ = "0.1.0"
