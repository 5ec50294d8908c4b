"""The service's TOML configuration, parsed into frozen dataclasses.

A file looks like ``examples/poolwatch.toml``::

    tasks = ["myapp.tasks"]

    [server]
    host = "127.0.0.1"
    port = 8000

    [[pools]]
    name = "io"
    max_workers = 16

    [[pools]]
    name = "crunch"
    kind = "process"
    max_workers = 4
    max_tasks_per_child = 1000

Every problem is reported as one :class:`ConfigError` naming the file, the key
(``pools[1].max_workers``) and the fix; unknown keys are errors, with a suggestion.
Pool keys are checked by the engine's own rules (:mod:`poolwatch.options`, and
:mod:`poolwatch.kinds` for ``kind`` and the options of a kind), as the HTTP API checks
them: a value is accepted or refused alike, in the same words.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poolwatch import kinds
from poolwatch.http.auth import TOKEN_RULE, token_problem
from poolwatch.http.fields import Field, FieldError, check_object, show
from poolwatch.http.recent import check_link
from poolwatch.http.schemas import (
    FILE_KIND_OPTIONS,
    HISTORY_SIZE,
    KIND,
    MAX_WORKERS,
    NAME,
    QUEUE_CAPACITY,
    QUEUE_TIMEOUT,
    REJECTION_POLICY,
    RUN_TIMEOUT,
)

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager

__all__ = [
    "TOKEN_ENV",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "PoolConfig",
    "ServerConfig",
    "ShutdownConfig",
    "TracingConfig",
    "create_pools",
    "load_config",
]

#: The environment variable that holds the API token (it wins over the file's).
TOKEN_ENV = "POOLWATCH_API_TOKEN"

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    read_only: bool = False
    max_body_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


@dataclass(frozen=True, slots=True)
class TracingConfig:
    enabled: bool = False
    service_name: str = "poolwatch"
    sampling_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """Links the console builds: ``trace_url`` holds ``{trace_id}``; ``grafana_url`` is
    Grafana's base URL or a URL with ``{pool}``."""

    trace_url: str | None = None
    grafana_url: str | None = None


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    grace_period: float = 30.0


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """The keyword arguments of ``PoolManager.create_pool``; ``kind_options`` are the
    options of its kind that the file gives, as (key, value) pairs."""

    name: str
    max_workers: int
    queue_capacity: int | None = None
    rejection_policy: str = "abort"
    queue_timeout: float | None = None
    run_timeout: float | None = None
    history_size: int = 10_000
    kind: str = "thread"
    kind_options: tuple[tuple[str, Any], ...] = ()

    def create_kwargs(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["name"], values["kind_options"]
        values.update(self.kind_options)
        return values


@dataclass(frozen=True, slots=True)
class Config:
    """Everything ``poolwatch serve`` needs; ``source`` is the file it came from."""

    server: ServerConfig = field(default_factory=ServerConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    pools: tuple[PoolConfig, ...] = ()
    tasks: tuple[str, ...] = ()
    source: str | None = None

    def with_overrides(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        read_only: bool | None = None,
        tasks: tuple[str, ...] = (),
    ) -> Config:
        """This config with command-line flags applied (``None`` keeps the file's value)."""
        server = self.server
        if host is not None:
            server = dataclasses.replace(server, host=host)
        if port is not None:
            server = dataclasses.replace(server, port=port)
        if read_only:
            server = dataclasses.replace(server, read_only=True)
        extra = tuple(t for t in tasks if t not in self.tasks)
        return dataclasses.replace(self, server=server, tasks=self.tasks + extra)


def _fields(*items: Field) -> dict[str, Field]:
    return {item.name: item for item in items}


_SERVER = _fields(
    Field("host", "string", "Address to listen on.", max_length=255),
    Field("port", "integer", "TCP port.", minimum=0, maximum=65535),
    Field("token", "string", "API token for mutations.", max_length=4096),
    Field("read_only", "boolean", "Refuse every mutation."),
    Field("max_body_bytes", "integer", "Largest request body.", minimum=1, maximum=64 << 20),
    Field(
        "header_timeout",
        "number",
        "Seconds a request line and headers may take to arrive.",
        exclusive_minimum=0,
        maximum=3600,
        unit="seconds",
    ),
    Field(
        "body_timeout",
        "number",
        "Seconds a request body may take to arrive.",
        exclusive_minimum=0,
        maximum=3600,
        unit="seconds",
    ),
    Field(
        "max_connections", "integer", "Most connections open at once.", minimum=1, maximum=1 << 20
    ),
)
_TRACING = _fields(
    Field("enabled", "boolean", "Export spans over OTLP."),
    Field("service_name", "string", "service.name resource attribute.", max_length=255),
    Field("sampling_ratio", "number", "Fraction of traces kept.", minimum=0, maximum=1),
)
_SHUTDOWN = _fields(
    Field(
        "grace_period",
        "number",
        "Seconds running tasks get.",
        minimum=0,
        maximum=3600,
        unit="seconds",
    ),
)
_CONSOLE = _fields(
    Field("trace_url", "string", "Trace viewer URL with {trace_id}.", max_length=2048),
    Field("grafana_url", "string", "Grafana base URL, or a URL with {pool}.", max_length=2048),
)
_POOL = _fields(
    NAME,
    dataclasses.replace(MAX_WORKERS, required=True),
    dataclasses.replace(QUEUE_CAPACITY, nullable=False),
    REJECTION_POLICY,
    dataclasses.replace(QUEUE_TIMEOUT, nullable=False),
    dataclasses.replace(RUN_TIMEOUT, nullable=False),
    HISTORY_SIZE,
    KIND,
    *(dataclasses.replace(f, nullable=False) for f in FILE_KIND_OPTIONS),
)
_TOP = _fields(
    Field("server", "object", "Server settings.", type_text="a table ([server])"),
    Field("tracing", "object", "Tracing settings.", type_text="a table ([tracing])"),
    Field("shutdown", "object", "Shutdown settings.", type_text="a table ([shutdown])"),
    Field("console", "object", "Console links.", type_text="a table ([console])"),
    Field("pools", "array", "Pools.", type_text="an array of tables ([[pools]])"),
    Field("tasks", "array", "Modules to import.", type_text='a list of module names (["pkg.mod"])'),
)


def _section(data: Mapping[str, Any], key: str, fields: Mapping[str, Field]) -> dict[str, Any]:
    if key not in data:
        return {}
    return check_object(data[key], fields, label=f"{key}.", what=f"[{key}]", noun="key")


def parse_config(
    data: Mapping[str, Any], *, source: str | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Build a :class:`Config` from decoded TOML; raises ConfigError naming ``source``."""
    env = os.environ if env is None else env
    where = source or "configuration"
    try:
        check_object(dict(data), _TOP, what="the file", noun="key")
        server = ServerConfig(**_section(data, "server", _SERVER))
        host = server.host.strip()
        if not host:
            raise FieldError(
                "server.host",
                f"server.host must be an address to listen on such as "
                f'"127.0.0.1", got {show(server.host)}',
            )
        server = dataclasses.replace(server, host=host)
        if server.token is not None:
            _check_token(server.token, "server.token", "remove the key or set")
        env_token = _env_token(env)
        if env_token is not None:
            server = dataclasses.replace(server, token=env_token)
        tracing = TracingConfig(**_section(data, "tracing", _TRACING))
        shutdown = ShutdownConfig(**_section(data, "shutdown", _SHUTDOWN))
        console = _console(_section(data, "console", _CONSOLE))
        pools = _pools(data.get("pools", []))
        tasks = _tasks(data.get("tasks", []))
    except FieldError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    return Config(
        server=server,
        tracing=tracing,
        shutdown=shutdown,
        console=console,
        pools=pools,
        tasks=tasks,
        source=source,
    )


def _console(values: dict[str, Any]) -> ConsoleConfig:
    for key, value in values.items():
        try:
            values[key] = check_link(key, value)
        except ValueError as exc:
            raise FieldError(f"console.{key}", f"console.{exc}") from None
    return ConsoleConfig(**values)


def _check_token(token: str, key: str, fix: str) -> None:
    problem = token_problem(token)
    if problem is not None:
        raise FieldError(key, f"{key} {problem}; {fix} a valid token: {TOKEN_RULE}")


def _env_token(env: Mapping[str, str]) -> str | None:
    """The token from the environment, checked like the file's; empty counts as unset
    (compose files often pass a variable through empty)."""
    token = env.get(TOKEN_ENV, "")
    if not token:
        return None
    try:
        _check_token(token, TOKEN_ENV, "unset it or set")
    except FieldError as exc:
        # Not the file's fault: say where the value came from instead.
        raise ConfigError(f"environment variable {exc.message}") from None
    return token


def _pools(items: list[Any]) -> tuple[PoolConfig, ...]:
    pools: list[PoolConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        label = f"pools[{index}]"
        values = check_object(
            item, _POOL, label=f"{label}.", what=label, noun="key", container="a table"
        )
        name = values["name"]
        if name in seen:
            raise FieldError(
                f"{label}.name",
                f"{label}.name {show(name)} is already used by pools[{seen[name]}]; "
                "pool names must be unique",
            )
        seen[name] = index
        pools.append(_pool(label, values))
    return tuple(pools)


def _pool(label: str, values: dict[str, Any]) -> PoolConfig:
    """One pool's checked keys; its kind's options checked by the kind, as
    ``create_pool`` checks them (one it does not take, or two that do not go together)."""
    kind = kinds.check_kind(values.get("kind", "thread"))
    given = {key: values.pop(key) for key in list(values) if key in _KIND_OPTION_KEYS}
    try:
        kinds.check_kind_options(kind, given)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        key = next((k for k in given if message.startswith(k)), None)
        where = f"{label}.{message}" if key else f"{label}: {message}"
        raise FieldError(f"{label}.{key or 'kind'}", where) from None
    return PoolConfig(**values, kind_options=tuple(given.items()))


_KIND_OPTION_KEYS = frozenset(f.name for f in FILE_KIND_OPTIONS)


def _tasks(items: list[Any]) -> tuple[str, ...]:
    modules: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, str) or not _MODULE_RE.match(item):
            raise FieldError(
                f"tasks[{index}]",
                f'tasks[{index}] must be a dotted module name such as "myapp.tasks", '
                f"got {show(item)}",
            )
        modules.append(item)
    return tuple(modules)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML file; every failure is one ConfigError naming the file."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_config(data, source=where, env=env)


def create_pools(manager: PoolManager, config: Config) -> None:
    """Create ``config``'s pools on ``manager``; a pool refused is a ConfigError naming it."""
    for index, pool in enumerate(config.pools):
        try:
            manager.create_pool(pool.name, **pool.create_kwargs())
        except (ValueError, TypeError) as exc:
            where = f"{config.source}: pools[{index}]" if config.source else f"pool {pool.name}"
            raise ConfigError(f"{where}: {exc}") from None
