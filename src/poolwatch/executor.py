"""``poolwatch.ThreadPoolExecutor`` and ``poolwatch.ProcessPoolExecutor``: the stdlib's
constructors, making managed pools.

``ThreadPoolExecutor(max_workers=None, thread_name_prefix="", initializer=None,
initargs=())`` and ``ProcessPoolExecutor(max_workers=None, mp_context=None,
initializer=None, initargs=(), *, max_tasks_per_child=None)`` as in
``concurrent.futures``, plus poolwatch's own keyword settings, ``name=`` and
``manager=``. The pool lives on ``manager`` (``default_manager()``, which
exports to the global Prometheus registry, unless given) and is held there weakly, as
code written for the stdlib expects: dropped without ``shutdown()``, it is collected and
its idle workers exit.
"""

from __future__ import annotations

import concurrent.futures.thread
import inspect
import itertools
import os
import re
import threading
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from . import kinds, options
from .errors import PoolExistsError
from .manager import PoolManager, exporting_globally
from .pool import ManagedPool, ManagedProcessPool, PoolBase

__all__ = [
    "ProcessPoolExecutor",
    "ThreadPoolExecutor",
    "default_manager",
    "instrument",
    "uninstrument",
]

_default: PoolManager | None = None
_instrumented: PoolManager | None = None  # where instrumented constructors put their pools
_default_lock = threading.Lock()
_counter = itertools.count()  # numbers default thread names as the stdlib does
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_PACKAGE = __name__.rpartition(".")[0]
_STDLIB = concurrent.futures.thread.ThreadPoolExecutor


def default_manager() -> PoolManager:
    """The process's own ``PoolManager``: the one exporting to prometheus_client's global
    registry. The program's own, if it made one there; else one made on first use (global
    registry and tracer). So executors made through ``instrument()`` join a manager the
    program already has, and never clash with it over the registry."""
    global _default
    with _default_lock:
        if _default is None:
            _default = exporting_globally() or PoolManager()
        return _default


class ThreadPoolExecutor(ManagedPool):
    """A ``ManagedPool`` made the way ``concurrent.futures.ThreadPoolExecutor`` is.

    Without ``name`` the pool is named from ``thread_name_prefix``, else from the module
    and function that created it (names stable across runs, so dashboards keep working),
    and joins the ``PoolFamily`` of that name: every executor made there is one pool in
    metrics, the API and the console.
    Threads are named ``{thread_name_prefix}_{index}``, or without a prefix
    ``ThreadPoolExecutor-{n}_{index}`` as the stdlib names them.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        name: str | None = None,
        manager: PoolManager | None = None,
        **settings: Any,
    ) -> None:
        mgr, base, derived = _manager_and_name(self, max_workers, thread_name_prefix, name, manager)
        prefix = thread_name_prefix or f"ThreadPoolExecutor-{next(_counter)}"

        def build(pool_name: str) -> None:
            engine = mgr.new_engine(
                pool_name, max_workers=max_workers, thread_name_prefix=prefix,
                initializer=initializer, initargs=initargs, kind="thread", **settings,
            )  # fmt: skip
            super(ThreadPoolExecutor, self).__init__(engine)

        _register(self, mgr, base, derived, "thread", build)


class ProcessPoolExecutor(ManagedProcessPool):
    """A ``ManagedProcessPool`` made the way ``concurrent.futures.ProcessPoolExecutor`` is.

    Without ``name`` the pool is named from the module and function that created it, and
    joins the ``PoolFamily`` of process pools of that name, as ``ThreadPoolExecutor``
    does for threads (a thread family of the same name makes it take the next ``-N``).
    ``mp_context=None`` is ``forkserver`` where the platform has it, else ``spawn`` (see
    ``poolwatch.options.default_mp_context``); ``max_workers=None`` is the stdlib's
    default, the CPUs this process may use. ``on_run_timeout="kill"`` among the settings
    kills and replaces a child whose task overran.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        on_run_timeout: str = "request",
        name: str | None = None,
        manager: PoolManager | None = None,
        **settings: Any,
    ) -> None:
        mgr, base, derived = _manager_and_name(self, max_workers, "", name, manager)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None and not isinstance(max_tasks_per_child, int):
            raise TypeError("max_tasks_per_child must be an integer")
        if isinstance(max_tasks_per_child, int) and max_tasks_per_child <= 0:
            raise ValueError("max_tasks_per_child must be >= 1")
        # The kind's own rules, as create_pool(kind="process") applies them.
        kind_options = kinds.check_kind_options(kinds.PROCESS, {
            "mp_context": mp_context, "max_tasks_per_child": max_tasks_per_child,
            "on_run_timeout": on_run_timeout,
        })  # fmt: skip

        def build(pool_name: str) -> None:
            make = partial(
                mgr.new_engine, pool_name, max_workers=_cpus() if max_workers is None else
                max_workers, thread_name_prefix="", kind="process", **settings,
            )  # fmt: skip
            engine, backend = kinds.process_engine(make, initializer, tuple(initargs), kind_options)
            super(ProcessPoolExecutor, self).__init__(engine, backend)

        _register(self, mgr, base, derived, "process", build)


def _cpus() -> int:
    """``ProcessPoolExecutor``'s default size: the CPUs this process may use."""
    return getattr(os, "process_cpu_count", os.cpu_count)() or 1


def _manager_and_name(
    instance: object, max_workers: Any, prefix: str, name: str | None, manager: PoolManager | None
) -> tuple[PoolManager, str, bool]:
    """The manager a stdlib-style constructor puts its pool on, the pool's name (given,
    else derived from the prefix or the creating code) and whether it was derived."""
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers <= 0
    ):
        options.check_max_workers(max_workers)  # raises, with the stdlib's words
    mgr = manager if manager is not None else (_instrumented or default_manager())
    if name is None:
        return mgr, _derived_name(prefix, instance), True
    return mgr, options.check_pool_name(name), False


def _register(
    pool: PoolBase, mgr: PoolManager, base: str, derived: bool, kind: str,
    build: Callable[[str], None],
) -> None:  # fmt: skip
    """Name ``pool``, have ``build(name)`` give it its engine, and register it on ``mgr``,
    held weakly. A given name is taken as it is; a derived one joins the family of that
    name and ``kind`` (again under the next free name if an explicit pool took it
    meanwhile)."""
    for _ in range(3):
        name = mgr.family_name(base, kind) if derived else base
        build(name)
        if not derived:
            mgr.register(pool, weak=True)  # held weakly: see the module's notes
            return
        try:
            mgr.adopt(pool)  # joins the family of its name, held weakly
            return
        except PoolExistsError:
            continue
    raise PoolExistsError(f"no free name for a pool derived from {base!r}")


def _derived_name(prefix: str, instance: object) -> str:
    """A pool name from the thread name prefix, else from the code creating the pool."""
    if prefix:
        return _safe(prefix)
    here = inspect.currentframe()  # then out of poolwatch
    frame: FrameType | None = None if here is None else here.f_back
    del here  # held by its own local, this frame would keep ``instance`` alive
    while frame is not None and (
        frame.f_locals.get("self") is instance
        or frame.f_globals.get("__name__", "").startswith(_PACKAGE + ".")
    ):
        frame = frame.f_back  # a subclass's __init__, or poolwatch itself
    if frame is None:
        return "executor"
    module = frame.f_globals.get("__name__") or "__main__"
    parts = [
        "main" if module == "__main__" else module,
        *(p for p in frame.f_code.co_qualname.split(".") if p not in ("<module>", "<locals>")),
    ]
    return _safe(".".join(parts))


def _safe(text: str) -> str:
    # The end of a long name (the function) tells more than its start (the package).
    name = _UNSAFE.sub("_", text)[-64:].lstrip("_.-")
    return name or "executor"


class _StdlibName(type):
    """The metaclass of the class ``instrument()`` installs under the stdlib's name.

    Code checks executors against that name at call time (asyncio's
    ``loop.set_default_executor`` does: ``isinstance(executor,
    concurrent.futures.ThreadPoolExecutor)``), so the installed class answers for the
    stdlib's: every ``ThreadPoolExecutor`` is an instance of it, the stdlib's own, those
    made before ``instrument()``, ``ManagedPool`` and their subclasses. Classes derived
    from it check as ordinary classes do.
    """

    def __instancecheck__(cls, instance: object) -> bool:
        if cls is InstrumentedThreadPoolExecutor:
            return isinstance(instance, _STDLIB)
        return super().__instancecheck__(instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        if cls is InstrumentedThreadPoolExecutor:
            return issubclass(subclass, _STDLIB)
        return super().__subclasscheck__(subclass)


class InstrumentedThreadPoolExecutor(ThreadPoolExecutor, metaclass=_StdlibName):
    """``concurrent.futures.ThreadPoolExecutor`` while ``instrument()`` is on: makes
    ``poolwatch.ThreadPoolExecutor`` pools, and ``isinstance``/``issubclass`` against it
    accept every stdlib ``ThreadPoolExecutor`` as before (see ``_StdlibName``)."""


def instrument(manager: PoolManager | None = None) -> None:
    """From now on every ``concurrent.futures.ThreadPoolExecutor(...)`` is a managed pool.

    Whichever way code names the class after this call (``concurrent.futures.X``,
    ``from concurrent.futures import X``, ``concurrent.futures.thread.X``), it makes a
    ``poolwatch.ThreadPoolExecutor``, on ``manager`` (default: ``default_manager()``);
    asyncio's default executor becomes a pool named ``asyncio``. ``isinstance(x, X)``
    stays true for every executor it was true for (the stdlib's, ``create_pool()``'s), so
    ``loop.set_default_executor(pool)`` still takes them. Code that imported the class
    *before* this call keeps the stdlib's: call it first (``poolwatch run`` does).
    Calling it again only changes the manager.
    """
    global _instrumented
    import concurrent.futures

    with _default_lock:
        _instrumented = manager
        installed = InstrumentedThreadPoolExecutor
        concurrent.futures.ThreadPoolExecutor = installed  # type: ignore[misc]
        concurrent.futures.thread.ThreadPoolExecutor = installed  # type: ignore[misc]


def uninstrument() -> None:
    """Undo ``instrument()``: new executors are the stdlib's again (pools made stay)."""
    global _instrumented
    import concurrent.futures

    with _default_lock:
        _instrumented = None
        for module in (vars(concurrent.futures), vars(concurrent.futures.thread)):
            if module.get("ThreadPoolExecutor") is InstrumentedThreadPoolExecutor:
                module["ThreadPoolExecutor"] = _STDLIB
