"""`codecsep` starts fast: `--version` builds no command, and `train` adds a recipe's flags only
when that recipe is used, with exactly the flags and help an eager build gives."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import codecsep
from codecsep.train.cli import RECIPES, RecipeParser, _defaults, _resolve, add_dataclass_flags
from codecsep.train.cli import register as register_train


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_version_imports_no_command_and_no_torch():
    out = run_python(
        "import sys\n"
        "from codecsep.cli import COMMANDS, main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, [m for m in COMMANDS.values() if m in sys.modules])"
    )
    assert out.splitlines() == [f"codecsep {codecsep.__version__}", "False []"]


def test_building_the_parser_resolves_no_training_recipe():
    out = run_python(
        "import sys\n"
        "from codecsep.cli import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in sys.modules if m.startswith('codecsep.train.')))"
    )
    assert out == "['codecsep.train.cli']"


def train_parsers() -> dict[str, argparse.ArgumentParser]:
    top = argparse.ArgumentParser(prog="codecsep")
    register_train(top.add_subparsers(dest="command"))
    train = top._subparsers._group_actions[0].choices["train"]
    return train._subparsers._group_actions[0].choices


def eager(name: str) -> argparse.ArgumentParser:
    """The recipe parser as it was built before: every flag added up front."""
    recipe = RECIPES[name]
    p = argparse.ArgumentParser(prog=f"codecsep train {name}", description=recipe.help.capitalize())
    p.add_argument("--manifest", required=True, help="corpus manifest.jsonl")
    p.add_argument("--out", required=True, help="run directory (resumed if it exists)")
    p.add_argument("--export", default=None, help="where to write the shippable checkpoint")
    for _, ref, prefix in recipe.configs:
        add_dataclass_flags(p, _defaults(_resolve(ref)), prefix)
    add_dataclass_flags(p, _defaults(_resolve(recipe.loop)))
    return p


def test_recipe_flags_are_added_on_first_use_and_match_an_eager_build(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    parsers = train_parsers()
    assert set(parsers) == set(RECIPES)
    for name, lazy in parsers.items():
        assert isinstance(lazy, RecipeParser)
        assert [a.dest for a in lazy._actions] == ["help", "manifest", "out", "export"]
        assert lazy.format_help() == eager(name).format_help()
        lazy.add_recipe_flags()  # a second call adds nothing
        assert len(lazy._actions) == len(eager(name)._actions)


def test_parsing_a_recipe_adds_its_flags_first():
    lazy = train_parsers()["separator"]
    args = lazy.parse_args(["--manifest", "m", "--out", "o", "--model.masker.depth", "3"])
    assert getattr(args, "model.masker.depth") == 3 and args.batch_size is None
    with pytest.raises(SystemExit):
        train_parsers()["codec"].parse_args(["--manifest", "m", "--out", "o", "--nope", "1"])
