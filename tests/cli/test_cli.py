"""The command line in-process: arguments, exit codes and start-up refusals."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolwatch import __version__
from poolwatch.cli import main


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"poolwatch {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["launch"], "invalid choice: 'launch'"),
        (["serve", "--port", "abc"], "must be an integer from 0 to 65535, got 'abc'"),
        (["serve", "--port", "70000"], "got '70000'"),
        (["serve", "--host", ""], "must be an address"),
        (["serve", "--bogus"], "unrecognized arguments: --bogus"),
        (["demo", "--port", "-1"], "--port"),
        (["serve", "--port", "²"], "argument --port: must be an integer from 0 to 65535"),
        (["demo", "--port", "¹²³"], "argument --port: must be an integer from 0 to 65535"),
        (["serve", "--port", "1" * 5000], "argument --port: must be an integer"),
        (["serve", "--tasks"], "expected at least one argument"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_config_file_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[pools]]\nname = "a"\nmax_workers = "ten"\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"poolwatch: error: {path}: pools[0].max_workers must be greater than 0 (an integer of "
        'at most 10000), got "ten"'
    )


def test_missing_config_file_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


def test_refuses_non_loopback_without_token(capsys, monkeypatch) -> None:
    monkeypatch.delenv("POOLWATCH_API_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the control API on 0.0.0.0 without an API token" in err
    assert "POOLWATCH_API_TOKEN" in err
    assert "--read-only" in err


def test_unimportable_task_module_exits_2(capsys) -> None:
    assert main(["serve", "--port", "0", "--tasks", "no_such_module_xyz"]) == 2
    err = capsys.readouterr().err
    assert "cannot import task module 'no_such_module_xyz' (from --tasks)" in err
    assert "ModuleNotFoundError" in err


def test_task_module_from_config_is_named(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.toml"
    path.write_text('tasks = ["no_such_module_abc"]\n')
    assert main(["serve", "--config", str(path), "--port", "0"]) == 2
    assert f"(from tasks[0] in {path})" in capsys.readouterr().err


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback port something already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_taken_port_exits_1(capsys) -> None:
    with _taken_port() as port:
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Address already in use" in err


def test_demo_refusal_names_only_what_demo_accepts(capsys, monkeypatch) -> None:
    monkeypatch.delenv("POOLWATCH_API_TOKEN", raising=False)
    assert main(["demo", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the control API on 0.0.0.0 without an API token" in err
    assert "Set POOLWATCH_API_TOKEN, or listen on 127.0.0.1 (--host 127.0.0.1)" in err
    assert "--read-only" not in err
    assert "config" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[server]\nhost = ""\n',
            'server.host must be an address to listen on such as "127.0.0.1", got ""',
        ),
        ("[shutdown]\ngrace_period = 1" + "0" * 400 + "\n", "shutdown.grace_period must be"),
        ('[server]\ntoken = " s3cret"\n', "server.token starts or ends with whitespace"),
    ],
)
def test_bad_values_in_the_file_exit_2_naming_file_and_key(
    tmp_path: Path, capsys, text: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with _taken_port() as port:  # should the check ever be lost, start-up fails (exit 1)
        assert main(["serve", "--config", str(path), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"poolwatch: error: {path}: {message}")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_bad_env_token_exits_2_naming_the_variable(capsys, monkeypatch) -> None:
    monkeypatch.setenv("POOLWATCH_API_TOKEN", "s3cret ")
    with _taken_port() as port:
        assert main(["demo", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "poolwatch: error: environment variable POOLWATCH_API_TOKEN starts or ends with whitespace"
    )
