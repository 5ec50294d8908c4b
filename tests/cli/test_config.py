"""Config files: typed values, one clear error naming file, key and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolwatch.config import Config, ConfigError, PoolConfig, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "poolwatch.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "poolwatch.toml"
    path.write_text(text)
    return path


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.server.host == "127.0.0.1"
    assert [p.name for p in config.pools] == ["io", "reports"]
    assert config.pools[1] == PoolConfig(
        name="reports",
        max_workers=2,
        queue_capacity=100,
        rejection_policy="abort",
        queue_timeout=60.0,
        run_timeout=300.0,
        history_size=5000,
    )
    assert config.tasks == ("poolwatch.demo",)
    assert config.source == str(EXAMPLE)


def test_defaults_without_a_file() -> None:
    config = parse_config({}, env={})
    assert config == Config()
    assert config.server.port == 8000
    assert config.shutdown.grace_period == 30.0
    assert config.tracing.enabled is False


def test_env_token_wins_over_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[server]\ntoken = "from-file"\n')
    assert load_config(path, env={}).server.token == "from-file"
    assert load_config(path, env={"POOLWATCH_API_TOKEN": "from-env"}).server.token == "from-env"


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'tasks = ["a"]\n[server]\nhost = "0.0.0.0"\nport = 9000\n')
    config = load_config(path, env={}).with_overrides(
        host="127.0.0.1", port=None, read_only=True, tasks=("b", "a")
    )
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 9000
    assert config.server.read_only is True
    assert config.tasks == ("a", "b")


def test_values_are_frozen() -> None:
    config = parse_config({}, env={})
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", 'unknown key server.prot; did you mean "port"?'),
        ("[srever]\n", 'unknown key srever; did you mean "server"?'),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\n[[pools]]\nname = "b"\nmax_workers = "ten"\n',
            'pools[1].max_workers must be greater than 0 (an integer of at most 10000), got "ten"',
        ),
        ("[[pools]]\nmax_workers = 1\n", "pools[0].name is required"),
        ('[[pools]]\nname = "a"\n', "pools[0].max_workers is required"),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\nmax_worker = 2\n',
            'unknown key pools[0].max_worker; did you mean "max_workers"?',
        ),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\n[[pools]]\nname = "a"\nmax_workers = 1\n',
            'pools[1].name "a" is already used by pools[0]',
        ),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\nrejection_policy = "drop"\n',
            'pools[0].rejection_policy must be one of "abort", "caller_runs"',
        ),
        ("[server]\nport = 70000\n", "server.port must be an integer >= 0 and <= 65535"),
        ('[server]\nread_only = "yes"\n', "server.read_only must be true or false"),
        ('[server]\ntoken = " "\n', "server.token starts or ends with whitespace"),
        ("[tracing]\nsampling_ratio = 2\n", "tracing.sampling_ratio must be a number"),
        ("[shutdown]\ngrace_period = -1\n", "shutdown.grace_period must be a number of seconds"),
        ('tasks = ["not a module"]\n', "tasks[0] must be a dotted module name"),
        ('tasks = "pkg.mod"\n', 'tasks must be a list of module names (["pkg.mod"])'),
        ("server = 3\n", "server must be a table ([server]), got 3"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text_of_error = str(info.value)
    assert text_of_error.startswith(f"{path}: ")
    assert message in text_of_error
    assert "\n" not in text_of_error


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file: No such file"):
        load_config(tmp_path / "absent.toml", env={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary, env={})


def test_toml_error_reports_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = = 1\n")
    with pytest.raises(ConfigError, match=r"line 2"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[shutdown]\ngrace_period = 1" + "0" * 400 + "\n", "shutdown.grace_period must be"),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\nqueue_timeout = 1' + "0" * 400 + "\n",
            "pools[0].queue_timeout must be a number of seconds > 0 and <= 2592000",
        ),
        (
            '[[pools]]\nname = "a"\nmax_workers = 1\nrun_timeout = -1' + "0" * 400 + "\n",
            "pools[0].run_timeout must be",
        ),
        ("[tracing]\nsampling_ratio = 1" + "0" * 400 + "\n", "tracing.sampling_ratio must be"),
        ("[shutdown]\ngrace_period = inf\n", "shutdown.grace_period must be"),
    ],
)
def test_numbers_past_float_range_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (" s3cret", "starts or ends with whitespace"),
        ("s3cret ", "starts or ends with whitespace"),
        ("sécret", 'contains "é", which is not allowed'),
        ("a=b", 'has "=" other than at its end'),
        ("", "is empty"),
    ],
)
def test_token_must_be_one_a_client_can_send(tmp_path: Path, token: str, problem: str) -> None:
    path = _write(tmp_path, f'[server]\ntoken = "{token}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: server.token {problem}; remove the key or set a valid")
    assert "RFC 6750" in message
    assert token.strip() not in message or not token.strip()  # the secret is not echoed


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (" s3cret", "starts or ends with whitespace"),
        ("s3cret\n", "starts or ends with whitespace"),
        (" ", "starts or ends with whitespace"),
        ("sécret", 'contains "é", which is not allowed'),
    ],
)
def test_env_token_is_checked_like_the_files(tmp_path: Path, token: str, problem: str) -> None:
    path = _write(tmp_path, '[server]\ntoken = "from-file"\n')
    env = {"POOLWATCH_API_TOKEN": token}
    loaders = (lambda: load_config(path, env=env), lambda: parse_config({}, env=env))
    for load in loaders:
        with pytest.raises(ConfigError) as info:
            load()
        message = str(info.value)
        assert message.startswith(
            f"environment variable POOLWATCH_API_TOKEN {problem}; unset it or set a valid"
        )
        assert "RFC 6750" in message


def test_empty_env_token_counts_as_unset(tmp_path: Path) -> None:
    path = _write(tmp_path, '[server]\ntoken = "from-file"\n')
    assert load_config(path, env={"POOLWATCH_API_TOKEN": ""}).server.token == "from-file"
    assert parse_config({}, env={"POOLWATCH_API_TOKEN": ""}).server.token is None


@pytest.mark.parametrize("host", ["", "   "])
def test_blank_host_names_file_and_key(tmp_path: Path, host: str) -> None:
    path = _write(tmp_path, f'[server]\nhost = "{host}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == (
        f'{path}: server.host must be an address to listen on such as "127.0.0.1", '
        f"got {json.dumps(host)}"
    )


def test_host_is_trimmed_like_the_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, '[server]\nhost = " 127.0.0.1 "\n')
    assert load_config(path, env={}).server.host == "127.0.0.1"


def test_load_config_is_public(tmp_path: Path) -> None:
    import poolwatch

    path = _write(tmp_path, '[[pools]]\nname = "io"\nmax_workers = 4\nqueue_capacity = 0\n')
    config = poolwatch.load_config(path, env={})
    assert [(p.name, p.max_workers, p.queue_capacity) for p in config.pools] == [("io", 4, 0)]
    assert "load_config" in poolwatch.__all__
    with pytest.raises(ConfigError, match="cannot read the config file"):
        poolwatch.load_config(tmp_path / "missing.toml")


def test_a_process_pool_in_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[pools]]\nname = "crunch"\nkind = "process"\nmax_workers = 2\n'
        'max_tasks_per_child = 100\non_run_timeout = "kill"\nmp_context = "spawn"\n'
        "run_timeout = 30\n",
    )
    (pool,) = load_config(path, env={}).pools
    assert pool.kind == "process"
    assert pool.create_kwargs() == {
        "max_workers": 2, "queue_capacity": None, "rejection_policy": "abort",
        "queue_timeout": None, "run_timeout": 30.0, "history_size": 10_000,
        "kind": "process", "max_tasks_per_child": 100, "on_run_timeout": "kill",
        "mp_context": "spawn",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('kind = "teleport"', "pools[0].kind must be one of 'thread', 'process'"),
        ("max_tasks_per_child = 3", "pools[0]: unexpected option 'max_tasks_per_child' for a "
         "pool of kind 'thread' (it takes no options of its own)"),
        ('kind = "process"\nmax_tasks_per_child = 0', "pools[0].max_tasks_per_child must be"),
        ('kind = "process"\nmp_context = "fork"\nmax_tasks_per_child = 2',
         "pools[0].max_tasks_per_child is incompatible with the 'fork'"),
        ('kind = "process"\nmp_context = "teleport"', "pools[0].mp_context must be"),
    ],
)  # fmt: skip
def test_kind_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, f'[[pools]]\nname = "p"\nmax_workers = 1\n{text}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}: {message}")
