"""Exception types with one-line, user-facing messages."""


class CodecSepError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class AudioError(CodecSepError):
    """A problem with an input or output audio file (missing, unreadable, empty, bad rate...)."""


class CodesFileError(CodecSepError):
    """A codes file that is truncated, corrupt, or made by another codec."""


class MissingDependencyError(CodecSepError):
    """An optional dependency is not installed; the message names the install command."""


def _missing(module: str, extra: str) -> MissingDependencyError:
    return MissingDependencyError(
        f"{module} is not installed: run `pip install 'codecsep[{extra}]'`")


def require(module: str, extra: str):
    """Import an optional dependency or fail with the install command to run."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise _missing(module, extra) from e


def require_installed(module: str, extra: str = "text") -> None:
    """Fail early, without importing it, when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise _missing(module, extra)


def _positive(kind: type, what: str):
    def parse(text: str):
        import argparse

        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = f"positive_{kind.__name__}"
    return parse


# argparse types that refuse 0 and negatives as the options are read (`--repeats 0`)
positive_int = _positive(int, "a whole number")
positive_float = _positive(float, "a number")
