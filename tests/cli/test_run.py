"""``poolwatch run``: a real program, its executors observed, its behaviour its own."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port, wait_until

SRC = str(Path(__file__).resolve().parents[2] / "src")

APP = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor  # imported by the program itself
    with ThreadPoolExecutor(2, thread_name_prefix="work") as ex:
        print(sum(ex.map(abs, range(-5, 5))))
    print("argv", sys.argv[1:], flush=True)
    sys.stdin.readline()  # the test says when to end
    sys.exit(3)
    """
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "POOLWATCH_"))}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(tmp_path: Path, *args: str, port: int) -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    return subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--port", str(port), *args,
         "--", "python", str(script), "a", "--flag"],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``proc``, killed on the way out if the test left it running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None


def _metrics(port: int) -> str:
    """The text of ``/metrics`` on the side port, once it serves."""
    text: str = wait_until(
        lambda: (r := _get(f"http://127.0.0.1:{port}/metrics")) is not None and r.text,
        timeout=20, message="the side port serves /metrics",
    )  # fmt: skip
    return text


def test_program_runs_observed_with_its_own_output_argv_and_exit_code(tmp_path: Path) -> None:
    port = free_port()
    with _reaped(_run(tmp_path, port=port)) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline() == "25\n"
        assert proc.stdout.readline() == "argv ['a', '--flag']\n"
        metrics = _metrics(port)
        assert 'poolwatch_tasks_submitted_total{pool="work"} 10.0' in metrics
        pools = httpx.get(f"http://127.0.0.1:{port}/api/pools", timeout=5).json()["data"]
        assert [p["name"] for p in pools] == ["work"]
        console = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert console.status_code == 200
        out, err = proc.communicate("\n", timeout=30)
    assert proc.returncode == 3
    assert out == ""
    assert err.splitlines() == [f"poolwatch: console at http://127.0.0.1:{port}/"]


def test_quiet_adds_nothing_and_module_form_runs(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "mod_app.py").write_text("import sys\nprint('module', sys.argv[1:])\n")
    done = subprocess.run(
        [sys.executable, "-m", "poolwatch", "run", "--quiet", "--port", str(port),
         "-m", "mod_app", "x"],
        env={**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{_env()['PYTHONPATH']}"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "module ['x']\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "nothing to run"), (["--", "no-such-program-here"], "program not found"),
     (["--port", "0", "--", "python", "-c", "pass"], "--port must be from 1 to 65535")],
)  # fmt: skip
def test_bad_invocations_say_what_is_wrong(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "poolwatch", "run", *args],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr


def test_token_from_the_environment_and_messages_in_runs_own_terms(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "app.py"
    script.write_text("import sys\nsys.stdin.readline()\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--quiet", "--port", str(port),
         "--", "python", str(script)],
        env={**_env(), "POOLWATCH_API_TOKEN": "s3cret"}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with _reaped(proc):
        url = f"http://127.0.0.1:{port}/api/pools"
        wait_until(lambda: _get(url) is not None, timeout=20, message="the side port serves")
        body = {"name": "x", "max_workers": 1}
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer no"}, timeout=5)
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"].endswith(
            "POOLWATCH_API_TOKEN or [server] token in its config file"
        )
        right = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert right.status_code == 201
        out, err = proc.communicate("\n", timeout=30)
    assert (proc.returncode, out, err) == (0, "", "")


def test_a_busy_side_port_leaves_the_program_running_without_the_service() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "poolwatch", "run", "--port", str(port),
             "--", "python", "-c", "print('ran')"],
            env=_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "ran\n")
    assert done.stderr.splitlines() == [
        f"poolwatch: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "port or stop the process using it; the program runs without the service"
    ]


ARGV = "import os, sys\nprint(sys.argv[1:], os.environ['POOLWATCH_PORT'])\n"


@pytest.mark.parametrize(
    ("form", "expected"),
    [(["-m", "argv_app"], "['--port', '1', '--bind', '127.0.0.1']"),
     (["python", "argv_app.py"], "['--port', '1', '--bind', '127.0.0.1']"),
     (["--", "python", "argv_app.py"], "['--port', '1', '--bind', '127.0.0.1']")],
    ids=["module", "program", "after --"],
)  # fmt: skip
def test_options_after_the_program_are_the_programs(
    tmp_path: Path, form: list[str], expected: str
) -> None:
    (tmp_path / "argv_app.py").write_text(ARGV)
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "poolwatch", "run", "--quiet", "--port", str(port), *form,
         "--port", "1", "--bind", "127.0.0.1"],
        env={**_env(), "PYTHONPATH": f"{tmp_path}{os.pathsep}{_env()['PYTHONPATH']}"},
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"{expected} {port}\n"  # --port before the program was poolwatch's


WRAPPED = textwrap.dedent(
    """
    import os, subprocess, sys
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2, thread_name_prefix="wrapped") as ex:
        print(sum(ex.map(abs, range(-3, 3))), flush=True)
    child = "import os; print(os.environ.get('POOLWATCH_RUN_CLAIMED') == str(os.getppid()))"
    subprocess.run([sys.executable, "-c", child], check=True)  # instrumented, not serving
    sys.stdin.readline()
    """
)


def test_a_shell_wrapper_runs_and_its_first_python_process_serves(tmp_path: Path) -> None:
    (tmp_path / "wrapped.py").write_text(WRAPPED)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--port", str(port), "--",
         "sh", "-c", f'"{sys.executable}" wrapped.py; echo after'],
        env=_env(), cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with _reaped(proc):
        assert proc.stdout is not None
        assert proc.stdout.readline() == "9\n"
        assert proc.stdout.readline() == "True\n"
        metrics = _metrics(port)
        assert 'poolwatch_tasks_submitted_total{pool="wrapped"} 6.0' in metrics
        out, err = proc.communicate("\n", timeout=30)
    assert (proc.returncode, out) == (0, "after\n")
    assert err.splitlines() == [f"poolwatch: console at http://127.0.0.1:{port}/"]


CONFIG = """
[server]
port = {port}
read_only = true

[[pools]]
name = "io"
max_workers = 3
"""


@pytest.mark.parametrize("given", ["--config", "POOLWATCH_CONFIG"])
def test_a_config_file_declares_pools_and_server_settings(tmp_path: Path, given: str) -> None:
    port = free_port()
    config = tmp_path / "poolwatch.toml"
    config.write_text(CONFIG.format(port=port))
    script = tmp_path / "app.py"
    script.write_text("import sys\nsys.stdin.readline()\n")
    flag = ["--config", str(config)] if given == "--config" else []
    env = {**_env(), "POOLWATCH_CONFIG": str(config)} if given != "--config" else _env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--quiet", *flag, "--", "python", str(script)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    with _reaped(proc):
        url = f"http://127.0.0.1:{port}/api/pools"  # the file's port
        pools = wait_until(lambda: (r := _get(url)) is not None and r.json()["data"],
                           timeout=20, message="the file's pools are served")  # fmt: skip
        assert [(p["name"], p["max_workers"]) for p in pools] == [("io", 3)]
        refused = httpx.post(url, json={"name": "x", "max_workers": 1}, timeout=5)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "read_only"
        out, err = proc.communicate("\n", timeout=30)
    assert (proc.returncode, out, err) == (0, "", "")


def test_token_flag_and_a_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[pools]]\nname = 'io'\nmax_workers = 0\n")
    done = subprocess.run(
        [sys.executable, "-m", "poolwatch", "run", "--config", str(bad), "--", "python", "-c",
         "print('never')"],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert f"{bad}: pools[0].max_workers" in done.stderr
    port = free_port()
    script = tmp_path / "app.py"
    script.write_text("import sys\nsys.stdin.readline()\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "poolwatch", "run", "--quiet", "--port", str(port),
         "--token", "tok-123", "--", "python", str(script)],
        env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    with _reaped(proc):
        url = f"http://127.0.0.1:{port}/api/pools"
        wait_until(lambda: _get(url) is not None, timeout=20, message="the side port serves")
        body = {"name": "x", "max_workers": 1}
        assert httpx.post(url, json=body, timeout=5).status_code == 401
        auth = {"Authorization": "Bearer tok-123"}
        assert httpx.post(url, json=body, headers=auth, timeout=5).status_code == 201
        out, err = proc.communicate("\n", timeout=30)
    assert (proc.returncode, out, err) == (0, "", "")


def test_off_loopback_without_a_token_is_refused_before_the_program_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "poolwatch", "run", "--host", "0.0.0.0", "--", "python", "-c",
         "print('never')"],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert "refusing to serve the control API on 0.0.0.0 without an API token" in done.stderr
