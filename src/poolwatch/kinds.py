"""Pool kinds: how the manager builds a pool of each kind from its settings.

``create_pool(name, kind=..., **kind_options)`` checks the settings every pool has itself
and hands the kind's own options to its ``PoolKind``: each option is checked by its rule
in ``options.py`` (the same rule for the library, the config file and HTTP), an option
the kind does not take is refused by name, and ``build`` makes the pool's facade around
an engine made by the manager (with the kind's backend, if it has one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import dask_pool, options
from .backend import Backend
from .engine import PoolEngine
from .pool import ManagedPool, ManagedProcessPool, PoolBase
from .processes import ProcessBackend

__all__ = [
    "KINDS",
    "EngineMaker",
    "PoolKind",
    "check_kind",
    "check_kind_name",
    "check_kind_options",
    "process_engine",
]


class EngineMaker(Protocol):
    """The manager's engine builder, settings already bound: what a kind adds to them."""

    def __call__(
        self,
        *,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        backend: Backend | None = None,
        on_run_timeout: str = "request",
        workers_default: Callable[[], int] = ...,
    ) -> PoolEngine: ...


def _no_rule(kind_options: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class PoolKind:
    """One kind of pool: its options (name -> (check, default)) and how to build it.

    ``build(make_engine, initializer, initargs, kind_options)`` gets the options checked
    and completed with their defaults. ``combined`` checks what the options allow
    together (after each was checked alone), raising ``ValueError``.
    """

    name: str
    options: Mapping[str, tuple[Callable[[Any], Any], Any]]
    build: Callable[
        [EngineMaker, Callable[..., object] | None, tuple[Any, ...], dict[str, Any]], PoolBase
    ]
    combined: Callable[[dict[str, Any]], None] = _no_rule


def _build_thread(
    make_engine: EngineMaker,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    kind_options: dict[str, Any],
) -> PoolBase:
    return ManagedPool(make_engine(initializer=initializer, initargs=initargs))


def process_engine(
    make_engine: EngineMaker,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    kind_options: dict[str, Any],
) -> tuple[PoolEngine, ProcessBackend]:
    """The engine and backend of a process pool, from its checked kind options (also
    for ``poolwatch.ProcessPoolExecutor``)."""
    backend = ProcessBackend(
        kind_options["mp_context"], initializer, initargs, kind_options["max_tasks_per_child"]
    )
    # The initializer runs in each child process, not in the engine's worker threads.
    engine = make_engine(
        initializer=None, initargs=(), backend=backend,
        on_run_timeout=kind_options["on_run_timeout"],
    )  # fmt: skip
    return engine, backend


def _build_process(
    make_engine: EngineMaker,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    kind_options: dict[str, Any],
) -> PoolBase:
    return ManagedProcessPool(*process_engine(make_engine, initializer, initargs, kind_options))


def _process_rule(kind_options: dict[str, Any]) -> None:
    if (
        kind_options["max_tasks_per_child"] is not None
        and kind_options["mp_context"].get_start_method() == "fork"
    ):
        raise ValueError(
            "max_tasks_per_child is incompatible with the 'fork' multiprocessing start "
            "method; supply a different mp_context."
        )


THREAD = PoolKind("thread", {}, _build_thread)
PROCESS = PoolKind(
    "process",
    {
        "mp_context": (options.check_mp_context, None),
        "max_tasks_per_child": (options.check_max_tasks_per_child, None),
        "on_run_timeout": (options.check_on_run_timeout, "request"),
    },
    _build_process,
    _process_rule,
)
DASK = PoolKind(
    "dask",
    {
        "client": (dask_pool.check_client, None),
        "address": (options.check_dask_address, None),
        "on_run_timeout": (options.check_on_run_timeout, "request"),
    },
    dask_pool.build_dask,
)

#: Every kind, by name.
KINDS: dict[str, PoolKind] = {k.name: k for k in (THREAD, PROCESS, DASK)}


def check_kind(kind: Any) -> PoolKind:
    found = KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ValueError(
            f"kind must be one of {', '.join(map(repr, KINDS))}, got {options.show(kind)}"
        )
    return found


def check_kind_name(kind: Any) -> str:
    """``kind`` as a config file or HTTP give it: one of the kinds' names."""
    return check_kind(kind).name


def check_kind_options(kind: PoolKind, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked, with the defaults of the options left out; ``TypeError`` naming
    every option the kind does not take."""
    unknown = [key for key in given if key not in kind.options]
    if unknown:
        takes = ", ".join(kind.options) or "no options of its own"
        raise TypeError(
            f"unexpected option{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} for a pool of kind {kind.name!r} "
            f"(it takes {takes})"
        )
    checked = {
        key: check(given.get(key, default)) for key, (check, default) in kind.options.items()
    }
    kind.combined(checked)
    return checked
