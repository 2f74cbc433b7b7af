"""Separators: text-queried (CodecSep, hierarchical, ResUNet) and two-speaker (Codecformer,
CodeSep). `load_separator(dir)` loads any text-queried checkpoint by the kind it records."""

from .registry import load_separator, model_class

__all__ = ["load_separator", "model_class"]
