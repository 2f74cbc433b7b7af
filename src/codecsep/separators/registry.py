"""Which class loads a checkpoint directory: the one place that maps a checkpoint kind to a model.

    sep = load_separator("runs/hier/checkpoint")    # a HierarchicalSeparator, from its config.json
    sep = load_separator(None)                      # the shipped default separator
    model_class("codecformer").load(path, codec=codec)

Classes are imported only when a checkpoint of their kind is loaded, so importing this module
costs nothing. Each class names its own kind (`checkpoint_kind`) and saves/loads itself
(`codecsep.checkpoint.Checkpointed`); this table only says where to find it.
"""

from __future__ import annotations

import importlib

from ..errors import CodecSepError

MODEL_CLASSES: dict[str, str] = {  # checkpoint kind -> "module:Class"
    "codecsep": "codecsep.separators.separator:Separator",
    "hierarchical": "codecsep.separators.hierarchical:HierarchicalSeparator",
    "resunet": "codecsep.separators.resunet:ResUNetSeparator",
    "codecformer": "codecsep.separators.codecformer:Codecformer",
    "codesep": "codecsep.separators.codesep:CodeSep",
}
TEXT_QUERIED = ("codecsep", "hierarchical", "resunet")  # separate(audio, prompts) models
SPEAKER_SEPARATORS = ("codecformer", "codesep")  # separate_speakers(audio) models


def model_class(kind: str) -> type:
    """The class that saves and loads checkpoints of `kind`."""
    if kind not in MODEL_CLASSES:
        raise CodecSepError(f"unknown model kind {kind!r}: use one of {', '.join(MODEL_CLASSES)}")
    module, _, name = MODEL_CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def load_separator(path=None, text_encoder=None, codec=None):
    """A text-queried separator (CodecSep, hierarchical or ResUNet) from a checkpoint directory,
    its class read from config.json; None loads the shipped default. `text_encoder` and `codec`
    replace the parts the checkpoint names (`codec` only for codec-based kinds)."""
    from ..checkpoint import checkpoint_kind

    if path is None:
        path = model_class("codecsep").default_checkpoint
    kind = checkpoint_kind(path)
    if kind not in TEXT_QUERIED:
        raise CodecSepError(f"{path}: holds a {kind!r} checkpoint, not a text-queried separator "
                            f"({', '.join(TEXT_QUERIED)})")
    parts = {k: v for k, v in (("text_encoder", text_encoder), ("codec", codec)) if v is not None}
    return model_class(kind).load(path, **parts)
