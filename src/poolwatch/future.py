"""``TaskFuture``: the future ``ManagedPool.submit`` returns.

A ``TaskFuture`` is a ``concurrent.futures.Future`` in every way ``wait``, ``as_completed``,
``asyncio.wrap_future`` and user code can tell, and cheaper than one:

- Most futures are never waited on before their task ends. Such a future is resolved
  under the pool's lock, which the worker holds anyway to record the task: no condition,
  no notification, no allocation.
- A future somebody waits on (``result()`` before it is done, ``wait``, ``as_completed``,
  ``add_done_callback``) is first marked *watched*, under the pool's lock; the pool then
  resolves it after releasing that lock, through the waiters it has.
- Instead of a ``threading.Condition`` per future, every ``TaskFuture`` shares one
  re-entrant lock as its ``_condition``. ``wait`` and ``as_completed`` only acquire and
  release it (re-entrantly, once per future) around reading ``_state`` and installing
  their waiter in ``_waiters``. A thread blocked in ``result()`` waits on a lock of its
  own, registered as one more waiter, so resolving a future wakes only its own waiters.

Lock order: the shared lock may be held while taking a pool's lock (marking a future
watched); never the other way round. Callbacks run with neither held.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from .states import CANCELLED, FAILED, SUCCEEDED

if TYPE_CHECKING:
    from .records import TaskInfo

__all__ = ["FutureOwner", "TaskFuture", "reinit_after_fork"]

log = logging.getLogger("poolwatch")

# Future states as concurrent.futures spells them: ``wait`` and ``as_completed`` compare
# a future's ``_state`` with these values.
PENDING = "PENDING"
RUNNING = "RUNNING"
_CANCELLED = "CANCELLED"  # a plain Future's cancel() before its executor noticed; never ours
CANCELLED_AND_NOTIFIED = "CANCELLED_AND_NOTIFIED"
FINISHED = "FINISHED"
_DONE = frozenset({_CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})
_CANCELLED_STATES = frozenset({_CANCELLED, CANCELLED_AND_NOTIFIED})

_shared = threading.RLock()


def reinit_after_fork() -> None:
    # A thread of the parent may have held it at fork(); the child starts with a new one.
    global _shared
    _shared = threading.RLock()


class FutureOwner(Protocol):
    """What a ``TaskFuture`` needs from the pool that made it."""

    @property
    def lock(self) -> threading.Lock: ...

    def task_id(self, seq: int) -> str: ...

    def task_info(self, seq: int) -> TaskInfo: ...

    def cancel_future(self, seq: int, request_running: bool) -> bool: ...


class _NoWaiters(list[Any]):
    """The waiter list of every future already done: nothing will ever wake a waiter
    through one, so ``wait`` and ``as_completed`` install theirs into nothing."""

    def append(self, waiter: Any) -> None:
        pass

    def remove(self, waiter: Any) -> None:
        pass


_NO_WAITERS = _NoWaiters()


class _Wakeup:
    """A waiter for one thread blocked in ``result()`` or ``exception()``."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()

    def add_result(self, future: Future[Any]) -> None:
        self.lock.release()

    add_exception = add_cancelled = add_result


def _from_asyncio(frame: FrameType | None) -> bool:
    """Whether ``frame`` is asyncio passing the cancellation of its own future on to the
    ``concurrent.futures`` future it wraps (``asyncio.futures._chain_future``)."""
    return (
        frame is not None
        and frame.f_code.co_name == "_call_check_cancel"
        and frame.f_globals.get("__name__") == "asyncio.futures"
    )


class TaskFuture(Future[Any]):
    """A ``concurrent.futures.Future`` that knows its task: ``task_id``, ``info()``.

    Thread-safe like ``Future``. ``cancel()`` cancels a queued task at once (the pool
    counts it) and, as the stdlib's, returns ``False`` for a running or finished task:
    ``ManagedPool.cancel(task_id)`` requests a running task's cooperative cancel. So does
    asyncio cancelling the coroutine that awaits this future (``run_in_executor``,
    ``asyncio.to_thread``, ``wrap_future``; by ``task.cancel()`` or ``asyncio.timeout``):
    inside the task ``poolwatch.cancel_requested()`` turns true, and ``cancel()`` still
    returns ``False``.

    A done-callback that raises, even ``SystemExit`` or ``KeyboardInterrupt``, is logged
    (logger ``poolwatch``, with the task id) and the next callbacks still run: callbacks
    run in the pool's workers and amid its bookkeeping, which must carry on.
    ``ThreadPoolExecutor`` logs ``Exception`` only and lets the others end its worker.
    """

    __slots__ = ("_callbacks", "_owner", "_seq", "_watched", "_wlist")

    def __init__(self, owner: FutureOwner, seq: int) -> None:
        # Future.__init__ is not called: it would make a condition this class has no use for.
        self._owner = owner
        self._seq = seq
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._watched = False
        self._wlist: list[Any] | None = None
        self._callbacks: list[Callable[[Future[Any]], object]] | None = None

    # -- what concurrent.futures' module functions use ------------------------------------

    @property
    def _condition(self) -> Any:  # type: ignore[override]
        self._watch()
        return _shared

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        # Read and changed by wait() and as_completed() with the shared lock held.
        waiters = self._wlist
        if waiters is None:
            if self._state in _DONE:
                return _NO_WAITERS  # nothing will wake a waiter through a future done
            self._watch()
            waiters = self._wlist = []
        return waiters

    def _watch(self) -> None:
        # A future already done needs no watching: nothing will resolve it again (its
        # state is final once set, so seeing it done without the lock is safe).
        if not self._watched and self._state not in _DONE:
            with self._owner.lock:
                self._watched = True

    # -- the task ------------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        """The task's id: opaque, URL-safe, unique within its ``PoolManager``."""
        return self._owner.task_id(self._seq)

    def info(self) -> TaskInfo:
        """A consistent snapshot of the task's record (``KeyError`` once evicted)."""
        return self._owner.task_info(self._seq)

    # -- Future's API --------------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the task if it is still queued; ``True`` if it is (now) cancelled."""
        state = self._state
        if state in _CANCELLED_STATES:
            return True
        if state == FINISHED:
            return False
        here = inspect.currentframe()  # this call's frame; its caller is f_back
        from_asyncio = here is not None and _from_asyncio(here.f_back)
        del here  # held by its own local, this frame would keep the future alive
        if state == RUNNING and not from_asyncio:
            return False
        # The task may start meanwhile: the pool decides under its lock, and for asyncio
        # requests the cooperative cancel of a running task (the answer stays False).
        return self._owner.cancel_future(self._seq, from_asyncio)

    def cancelled(self) -> bool:
        return self._state in _CANCELLED_STATES

    def running(self) -> bool:
        return self._state == RUNNING

    def done(self) -> bool:
        return self._state in _DONE

    def result(self, timeout: float | None = None) -> Any:
        if self._state != FINISHED:
            self._await(timeout)
        if self._exception is not None:
            try:
                raise self._exception
            finally:
                self = None  # type: ignore[assignment]  # noqa: PLW0642  # no cycle via the traceback
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED:
            self._await(timeout)
        return self._exception

    def _await(self, timeout: float | None) -> None:
        """Return when finished; raise ``CancelledError``, or ``TimeoutError`` at ``timeout``."""
        if self._state not in _DONE:
            self._watch()
            waiter = None
            waiters: list[Any] = []
            with _shared:
                if self._state not in _DONE:
                    waiter = _Wakeup()
                    if self._wlist is None:
                        self._wlist = waiters
                    waiters = self._wlist
                    waiters.append(waiter)
            if waiter is not None and not waiter.lock.acquire(
                True, -1 if timeout is None else max(0.0, timeout)
            ):
                with _shared:  # timed out: nobody will wake this waiter
                    if waiter in waiters:
                        waiters.remove(waiter)
        state = self._state
        if state in _CANCELLED_STATES:
            raise CancelledError()
        if state != FINISHED:
            raise TimeoutError()

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        if self._state not in _DONE:
            self._watch()
            with _shared:
                if self._state not in _DONE:
                    if self._callbacks is None:
                        self._callbacks = []
                    self._callbacks.append(fn)
                    return
        try:
            fn(self)
        except Exception:
            log.exception("done-callback %r of task %s raised", fn, self.task_id)

    def set_running_or_notify_cancel(self) -> bool:
        """For executors other than the pool: the stdlib's contract."""
        with _shared:
            if self._state in _CANCELLED_STATES:
                return False
            if self._state != PENDING:
                raise RuntimeError(f"Future in unexpected state: {self._state}")
            self._state = RUNNING
            return True

    def set_result(self, result: Any) -> None:
        """Resolve the future (for tests): the pool's record of the task is unaffected."""
        self._set(SUCCEEDED, result, check=True)

    def set_exception(self, exception: BaseException | None) -> None:
        """Resolve the future (for tests): the pool's record of the task is unaffected."""
        self._set(FAILED, exception, check=True)

    # -- steps for the pool --------------------------------------------------------------

    def number_locked(self, seq: int) -> None:
        """The pool accepted the task as number ``seq`` (under its lock)."""
        self._seq = seq

    def start_locked(self) -> None:
        """The task started (the pool calls this under its lock)."""
        self._state = RUNNING

    def settle_locked(self, outcome: int, payload: Any) -> bool:
        """Resolve under the pool's lock when nobody watches; ``False`` if ``settle`` must
        do it once that lock is released."""
        if self._watched:
            return False
        if outcome == SUCCEEDED:
            self._result = payload
            self._state = FINISHED
        elif outcome == FAILED:
            self._exception = payload
            self._state = FINISHED
        else:
            self._state = CANCELLED_AND_NOTIFIED
        return True

    def settle(self, outcome: int, payload: Any) -> None:
        """Resolve, wake the waiters and run the callbacks (without the pool's lock)."""
        self._set(outcome, payload, check=False)

    def _set(self, outcome: int, payload: Any, *, check: bool) -> None:
        with _shared:
            if self._state in _DONE:
                if check:
                    raise InvalidStateError(f"{self._state}: {self!r}")
                return
            if outcome == CANCELLED:
                self._state = CANCELLED_AND_NOTIFIED
            elif outcome == SUCCEEDED:
                self._result = payload
                self._state = FINISHED
            else:
                self._exception = payload
                self._state = FINISHED
            for waiter in self._wlist or ():
                if outcome == SUCCEEDED:
                    waiter.add_result(self)
                elif outcome == FAILED:
                    waiter.add_exception(self)
                else:
                    waiter.add_cancelled(self)
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except BaseException:
                log.exception("done-callback %r of task %s raised", callback, self.task_id)
