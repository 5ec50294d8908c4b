"""The ``[console]`` table: links to a trace viewer and to Grafana."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolwatch.config import ConfigError, ConsoleConfig, load_config


def _load(tmp_path: Path, text: str) -> ConsoleConfig:
    path = tmp_path / "poolwatch.toml"
    path.write_text(text)
    return load_config(path, env={}).console


def test_console_links_load(tmp_path: Path) -> None:
    console = _load(
        tmp_path,
        '[console]\ntrace_url = "http://jaeger:16686/trace/{trace_id}"\n'
        'grafana_url = " https://grafana.example.com "\n',
    )
    assert console.trace_url == "http://jaeger:16686/trace/{trace_id}"
    assert console.grafana_url == "https://grafana.example.com"
    assert _load(tmp_path, "") == ConsoleConfig()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[console]\ntrace_url = "http://jaeger/trace/"', "console.trace_url must contain"),
        ('[console]\ntrace_url = "ftp://x/{trace_id}"', "console.trace_url must be an http"),
        ('[console]\ngrafana_url = "http://g/{dashboard}"', "may only use the placeholder {pool}"),
        ("[console]\ngrafana_url = 3", "console.grafana_url must be a string"),
        ('[console]\ntrace_ur = "http://x/{trace_id}"', 'did you mean "trace_url"'),
    ],
)
def test_bad_links_name_the_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "poolwatch.toml"))
    assert words in message
