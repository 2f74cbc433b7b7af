# exploration: the shipped default with another window length (SeparatorConfig.window_seconds) for long inputs
import dataclasses
import sys

import codecsep.separators.separator as sp

seconds = float(sys.argv[1])
_load = sp.Separator.load.__func__


def load(cls, *a, **k):
    model = _load(cls, *a, **k)
    model.config = dataclasses.replace(model.config, window_seconds=seconds)
    return model


sp.Separator.load = classmethod(load)
from codecsep.cli import main  # noqa: E402

sys.exit(main(sys.argv[2:]))
