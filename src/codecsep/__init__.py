"""CodecSep: text-prompted sound separation on neural-codec latents and code streams."""

__version__ = "0.1.0"

# Public API, imported lazily so `import codecsep` stays cheap (no torch model loading at import).
_LAZY = {
    "Separator": "codecsep.separators.separator",
    "load_audio": "codecsep.audio",
    "save_audio": "codecsep.audio",
    "load_codec": "codecsep.codecs",
    "si_sdr": "codecsep.metrics",
    "si_sdr_improvement": "codecsep.metrics",
    "separate": "codecsep.separators.api",
    "trained_sounds": "codecsep.separators.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'codecsep' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API (tab completion finds `separate` before it is imported)."""
    return sorted({*globals(), *_LAZY} - {"_LAZY"})


__all__ = ["__version__", *_LAZY]
