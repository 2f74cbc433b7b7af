"""The `codecsep` command: help, version, and the one-line error contract."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import codecsep
from codecsep import cli
from codecsep.errors import AudioError

SRC = Path(codecsep.__file__).resolve().parents[1]


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse exits for --help and --version
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def registered_commands() -> list[str]:
    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices)


def test_help_lists_every_available_subcommand(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and out.startswith("usage: codecsep")
    registered = registered_commands()
    available = [
        name for name, module in cli.COMMANDS.items() if importlib.util.find_spec(module)
    ]
    assert registered == available  # every command whose module exists is registered
    for name in registered:
        assert name in out


def test_no_arguments_prints_help(capsys):
    code, out, _ = run_main([], capsys)
    assert code == 0 and "usage: codecsep" in out


def test_version_in_process(capsys):
    code, out, _ = run_main(["--version"], capsys)
    assert code == 0 and out.strip() == f"codecsep {codecsep.__version__}"


def test_version_via_python_m(tmp_path):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "codecsep", "--version"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"codecsep {codecsep.__version__}"
    assert list(tmp_path.iterdir()) == []


def fake_command(monkeypatch, func) -> None:
    """Register a `fake` subcommand whose handler is `func(args)`."""
    module = types.ModuleType("codecsep_fake_command")

    def register(subparsers):
        p = subparsers.add_parser("fake", help="a test command")
        p.set_defaults(func=func)

    module.register = register
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", module.__name__)


def test_codecsep_errors_print_one_line_and_exit_2(monkeypatch, capsys):
    def fail(args):
        raise AudioError("missing.wav: no such file")

    fake_command(monkeypatch, fail)
    code, out, err = run_main(["fake"], capsys)
    assert code == 2 and out == ""
    assert err == "codecsep: error: missing.wav: no such file\n"


def test_command_return_value_is_the_exit_code(monkeypatch, capsys):
    fake_command(monkeypatch, lambda args: 3)
    assert run_main(["fake"], capsys)[0] == 3
    fake_command(monkeypatch, lambda args: None)
    assert run_main(["fake"], capsys)[0] == 0


def test_unwritten_command_is_skipped_but_broken_one_raises(monkeypatch, tmp_path):
    monkeypatch.setitem(cli.COMMANDS, "absent", "codecsep_absent_command")
    assert "absent" not in registered_commands()  # its module is not written yet

    # a command module that exists but imports a missing dependency must fail loudly
    (tmp_path / "codecsep_broken_command.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "broken", "codecsep_broken_command")
    with pytest.raises(ModuleNotFoundError, match="not_installed_dependency"):
        cli.build_parser()


@pytest.mark.parametrize("argv", [["bench", "--repeats", "0"], ["bench", "--seconds", "-1"],
                                  ["eval", "--model", "mixture", "--protocol", "two_source",
                                   "--n", "0"], ["curves", "--run", "a=b", "--every", "0"]])
def test_counts_and_lengths_below_1_are_refused_as_options_are_read(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and "must be above 0" in capsys.readouterr().err
