"""Worker processes for ``kind="process"``: one child process per engine worker thread.

The pool's queue, policies, timeouts, records, metrics and spans stay in its engine (see
``backend.py``); each of its worker threads owns one child process and hands it the tasks
it takes, one at a time, over a pipe of its own:

- out: ``(task number, task id, fn, args, kwargs, trace carrier)``, pickled in the
  worker thread (a task that cannot be pickled fails with that error, its child untouched);
- back: ``(True, result)`` or ``(False, exception)``, the exception carrying the child's
  traceback text as ``__cause__`` the way ``ProcessPoolExecutor`` reports it.

A child starts with the worker (running ``initializer(*initargs)``; when that fails the
pool breaks with ``BrokenProcessPool``, as the stdlib's does) and is replaced at once
after it crashed, was killed or ran ``max_tasks_per_child`` tasks: the new child starts
while the worker reports the old one's task, so the pool is back to full strength without
waiting for work (the worker's next task waits for its initializer). A child
that dies mid-task (a segfault, ``os._exit``, the OOM killer's SIGKILL) fails that task
alone with ``ProcessCrashedError`` naming the exit code or signal; the pool goes on.

Cooperative cancels reach the child through a shared integer per child: the number of
the task asked to stop, which ``poolwatch.cancel_requested()`` in the child compares with
its own. ``interrupt`` (``on_run_timeout="kill"``) kills the child: its task ends
``CANCELLED`` with the reason (``TaskInterruptedError``) in its record.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool, _ExceptionWithTraceback
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from .errors import TaskCancelledError, TaskInterruptedError
from .work import CURRENT

if TYPE_CHECKING:
    from .work import WorkItem
    from .workers import Worker

__all__ = ["ProcessBackend", "ProcessCrashedError"]

log = logging.getLogger("poolwatch")
futures_log = logging.getLogger("concurrent.futures")

_READY = b"ready"
_STOP = b"stop"
_JOIN_SECONDS = 5.0  # for a child told to stop to exit before it is killed
_LAUNCH_WAIT = 10.0  # most a read of the processes waits for new workers to start theirs
_POLL_SECONDS = 0.01
_DUMP = pickle.HIGHEST_PROTOCOL


class ProcessCrashedError(BrokenProcessPool):
    """A worker process died while running the task (a crash, ``os._exit``, a signal).

    Only that task fails; the pool replaces the process and goes on. ``exitcode`` is the
    process's (negative: the signal that ended it), ``pid`` its process id. A subclass of
    ``BrokenProcessPool``, which code written for the stdlib catches for the same event.
    """

    def __init__(self, message: str, *, pid: int | None, exitcode: int | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode


# -- the child's side -------------------------------------------------------------------


class ChildTask:
    """``current_task()`` inside a child process: the task's id and its cancel flag."""

    __slots__ = ("_flag", "seq", "task_id")

    def __init__(self, flag: Any, seq: int, task_id: str) -> None:
        self._flag = flag
        self.seq = seq
        self.task_id = task_id

    @property
    def cancel_requested(self) -> bool:
        return bool(self._flag.value == self.seq)

    @property
    def item(self) -> ChildTask:
        """As ``CURRENT.holder``: the task this child runs is this one."""
        return self

    def raise_if_cancel_requested(self) -> None:
        if self.cancel_requested:
            raise TaskCancelledError(f"task {self.task_id} was asked to stop")


def _with_traceback(exc: BaseException) -> Any:
    """``exc`` as the parent should get it: with this process's traceback as text in its
    ``__cause__`` (a ``_RemoteTraceback``), as ``ProcessPoolExecutor`` sends errors."""
    return _ExceptionWithTraceback(exc, exc.__traceback__)  # type: ignore[arg-type]


def _reply(ok: bool, payload: Any) -> bytes:
    """The answer to the parent; a result or error that cannot be pickled becomes that
    pickling error (as ``ProcessPoolExecutor`` reports it)."""
    try:
        return pickle.dumps((ok, payload), _DUMP)
    except BaseException as exc:
        try:
            return pickle.dumps((False, _with_traceback(exc)), _DUMP)
        except BaseException:
            text = "".join(traceback.format_exception(exc))
            return pickle.dumps((False, RuntimeError(text)), _DUMP)


def _run_one(flag: Any, data: bytes) -> bytes:
    """Run one task sent by the parent; the reply to send back."""
    try:
        seq, task_id, fn, args, kwargs, carrier = pickle.loads(data)
    except BaseException as exc:
        return _reply(False, _with_traceback(exc))
    token = otel_context.attach(propagate.extract(carrier)) if carrier else None
    CURRENT.holder = ChildTask(flag, seq, task_id)  # what current_task() returns here
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:
        return _reply(False, _with_traceback(exc))
    finally:
        CURRENT.holder = None
        if token is not None:
            otel_context.detach(token)
        del fn, args, kwargs
    return _reply(True, result)


def child_main(
    conn: Any, flag: Any, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> None:
    """A worker process: run the initializer, then tasks until told to stop (or orphaned)."""
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            futures_log.critical("Exception in initializer:", exc_info=True)
            conn.send_bytes(b"failed:" + "".join(traceback.format_exception(exc)).encode())
            return
    conn.send_bytes(_READY)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):  # the parent is gone
            return
        if data == _STOP:
            return
        conn.send_bytes(_run_one(flag, data))


# -- the parent's side ------------------------------------------------------------------


class _Child:
    """One worker's process, its end of the pipe and its cancel flag."""

    __slots__ = ("conn", "flag", "killed", "process", "ready", "running", "tasks")

    def __init__(self, process: Any, conn: Any, flag: Any) -> None:
        self.process = process
        self.conn = conn
        self.flag = flag
        self.tasks = 0
        self.running = 0  # the number of the task it runs, 0 when idle
        self.killed = False
        self.ready = False  # its initializer has run


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {-exitcode} ({name})"
    return f"exited with code {exitcode}"


def _carrier() -> dict[str, str]:
    """The running span's context (the task's, in its worker thread) for the child."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


class ProcessBackend:
    """Runs a pool's tasks in one child process per worker thread (see the module)."""

    kind = "process"
    broken_error: type[Exception] = BrokenProcessPool
    broken_message = "A process initializer failed, the process pool is not usable anymore"

    def __init__(
        self,
        mp_context: BaseContext,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        max_tasks_per_child: int | None,
    ) -> None:
        self._ctx = mp_context
        self._initializer = initializer
        self._initargs = initargs
        self._max_tasks = max_tasks_per_child
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a child was started
        self._children: dict[int, _Child] = {}  # by worker index
        self._workers: dict[int, Worker] = {}  # the live workers, by index
        self._broken: str | None = None
        self._started = False  # a first child was started
        self._closed = False

    @property
    def mp_context(self) -> BaseContext:
        return self._ctx

    def processes(self, *, settle: bool = True) -> dict[int, Any]:
        """The child processes by pid (``ProcessPoolExecutor._processes``); with
        ``settle``, once every worker on its way to a task has started its child (a
        bounded wait): a worker starts its child just after ``submit`` started the
        worker or woke it, where the stdlib starts a process in ``submit`` itself."""
        deadline = time.monotonic() + (_LAUNCH_WAIT if settle else 0.0)
        with self._changed:
            while self._starting() and (left := deadline - time.monotonic()) > 0:
                # Polled: a worker taking a task is the engine's, it notifies nobody here.
                self._changed.wait(min(left, _POLL_SECONDS))
            children = list(self._children.values())
        return {c.process.pid: c.process for c in children if c.process.pid is not None}

    def _starting(self) -> bool:
        """Whether a worker is on its way to a task without a child (under the lock)."""
        if self._closed or self._broken is not None:
            return False
        return any(
            index not in self._children and (w.woken or w.item is not None)
            for index, w in self._workers.items()
        )

    # -- the Backend protocol ----------------------------------------------------------

    def start_worker(self, worker: Worker) -> None:
        """The pool's first child starts with its worker and runs its initializer before
        that worker takes a task, so that a failing initializer breaks the pool as the
        stdlib's does. Other workers take their first task at once and start their
        child for it (``run``), as the stdlib hands tasks to processes still starting:
        a task submitted just before ``shutdown(cancel_futures=True)`` may run."""
        with self._lock:
            first, self._started = not self._started, True
            self._workers[worker.index] = worker
        if first:
            self._await_ready(worker, self._launch(worker))

    def run(self, worker: Worker, item: WorkItem) -> Any:
        child = self._ready_child(worker)
        data = pickle.dumps(
            (item.seq, item.task_id, item.fn, item.args, item.kwargs, _carrier()), _DUMP
        )
        child.running = item.seq
        if item.cancel_requested:  # asked while its child was starting
            child.flag.value = item.seq
        try:
            child.conn.send_bytes(data)
            reply = child.conn.recv_bytes()
        except (EOFError, OSError):
            error = self._lost(worker, child, item)
            self._replace(worker)
            raise error from None
        finally:
            child.running = 0
        child.tasks += 1
        if child.killed or (self._max_tasks is not None and child.tasks >= self._max_tasks):
            self._drop(worker.index, child, stop=True)  # (killed: just as its task ended)
            self._replace(worker)
        ok, payload = pickle.loads(reply)
        if ok:
            return payload
        raise payload

    def interrupt(self, worker: Worker) -> bool:
        """Kill the child of ``worker`` if it still runs an overdue task."""
        item = worker.item
        with self._lock:
            child = self._children.get(worker.index)
            seq = getattr(item, "seq", 0)
            if child is None or not seq or child.running != seq:
                return False
            child.killed = True
        child.process.kill()
        return True

    def request_cancel(self, index: int, seq: int) -> None:
        child = self._children.get(index)  # a dict read: no lock under the engine's
        if child is not None:
            child.flag.value = seq

    def stop_worker(self, worker: Worker) -> None:
        with self._lock:
            child = self._children.get(worker.index)
            if self._workers.get(worker.index) is worker:
                del self._workers[worker.index]
        if child is not None:
            self._drop(worker.index, child, stop=True)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            left = list(self._children.items())
        for index, child in left:
            self._drop(index, child, stop=True)

    # -- children ----------------------------------------------------------------------

    def _launch(self, worker: Worker) -> _Child:
        """Start a child for ``worker`` without waiting for it: it counts among the
        pool's processes at once, and its initializer runs while the worker goes on."""
        parent_end, child_end = self._ctx.Pipe()
        flag = self._ctx.RawValue("q", 0)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(child_end, flag, self._initializer, self._initargs),
            name=f"{worker.name}-process",
        )
        try:
            process.start()
        finally:
            child_end.close()
        child = _Child(process, parent_end, flag)
        with self._changed:
            self._children[worker.index] = child
            self._changed.notify_all()
        return child

    def _await_ready(self, worker: Worker, child: _Child) -> None:
        """Wait until ``child`` has run its initializer; ``BrokenProcessPool`` if that failed."""
        if child.ready:
            return
        try:
            hello = child.conn.recv_bytes()
        except (EOFError, OSError):
            child.process.join(_JOIN_SECONDS)
            hello = f"failed:the process {_how_it_ended(child.process.exitcode)}".encode()
        if hello != _READY:
            self._drop(worker.index, child, stop=False)
            detail = hello.decode(errors="replace").removeprefix("failed:").strip()
            raise BrokenProcessPool(
                f"the initializer of worker {worker.name}'s process failed: {detail}"
            )
        child.ready = True

    def _ready_child(self, worker: Worker) -> _Child:
        """The worker's child, started if it has none, once its initializer ran; once an
        initializer failed in a replacement, every later task fails with that error
        instead of retrying it."""
        if self._broken is not None:
            raise BrokenProcessPool(self._broken)
        with self._lock:
            child = self._children.get(worker.index)
        try:
            if child is None:
                child = self._launch(worker)
            self._await_ready(worker, child)
        except BrokenProcessPool as exc:
            self._broken = str(exc)
            raise
        return child

    def _replace(self, worker: Worker) -> None:
        """A child ended (crashed, killed, or done with its tasks): start the next one at
        once, so that the pool is back to full strength before work comes."""
        if worker.retire or self._closed or self._broken is not None:
            return
        try:
            self._launch(worker)
        except Exception:  # the next task starts one, or reports why it cannot
            log.exception("could not start a new worker process for %s", worker.name)

    def _lost(self, worker: Worker, child: _Child, item: WorkItem) -> Exception:
        """The child died running ``item``: forget it and say how it ended."""
        child.process.join(_JOIN_SECONDS)
        pid, code = child.process.pid, child.process.exitcode
        self._drop(worker.index, child, stop=False)
        if child.killed:
            return TaskInterruptedError(
                f"task {item.task_id} ran past its run timeout; its worker process (pid {pid}) "
                f"was killed and is replaced"
            )
        return ProcessCrashedError(
            f"the worker process (pid {pid}) of {worker.name} {_how_it_ended(code)} while "
            f"running task {item.task_id}; that task failed, the process is replaced and "
            "the pool goes on",
            pid=pid,
            exitcode=code,
        )

    def _drop(self, index: int, child: _Child, *, stop: bool) -> None:
        """Forget ``child``; with ``stop`` tell it to exit first. Joins it (killing it if
        it does not exit in time) so that no process outlives its pool."""
        with self._lock:
            if self._children.get(index) is child:
                del self._children[index]
        if stop and child.process.is_alive():
            with contextlib.suppress(OSError):
                child.conn.send_bytes(_STOP)
        child.process.join(_JOIN_SECONDS)
        if child.process.is_alive():
            log.warning("worker process %s did not stop; killing it", child.process.pid)
            child.process.kill()
            child.process.join()
        child.conn.close()  # (the Process stays usable: code may still join it)
