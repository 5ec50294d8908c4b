"""Live Python stacks of the threads that run tasks.

``capture_stack`` reads one thread's current frame from ``sys._current_frames()`` and
walks it outwards: nothing is done, and nothing kept, until someone asks. The frames of
the thread's start-up and of poolwatch's worker loop, below the task's own function,
are left out; the rest is bounded in depth (the innermost ``max_frames`` are kept) and
in size (source lines are cut at ``max_source`` characters).
"""

from __future__ import annotations

import contextlib
import linecache
import os
import site
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from types import CodeType, FrameType

__all__ = ["StackFrame", "TaskStack", "capture_stack"]


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One frame: where it is and the source line it is on.

    ``library`` is true for frames in the standard library, installed packages
    (site-packages) and poolwatch itself; false for the application's own code.
    ``source`` is ``None`` when the line cannot be read (no file, or compiled code).
    """

    file: str
    line: int
    function: str
    source: str | None
    library: bool


@dataclass(frozen=True, slots=True)
class TaskStack:
    """A running task's stack at ``taken_at`` (epoch seconds), innermost frame last.

    ``truncated`` is true when outer frames were left out to stay within the bound.
    """

    task_id: str
    pool: str
    thread: str
    taken_at: float
    frames: tuple[StackFrame, ...]
    truncated: bool


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Shipped with poolwatch, but application code in every other sense: the demo's tasks
# are what a user's own tasks look like, so they count as the task's own frames.
_APPLICATION_FILES = frozenset({os.path.join(_PACKAGE_DIR, "demo.py")})


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    with contextlib.suppress(AttributeError):  # some virtualenv builds of site.py lack it
        dirs.update(site.getsitepackages())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user_site:
        dirs.add(user_site)
    return tuple(sorted({os.path.abspath(d).rstrip(os.sep) + os.sep for d in dirs if d}))


_LIBRARY_DIRS = _library_dirs()
_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")

# file name -> (is poolwatch's own, is library); bounded, cleared when full.
_KINDS: dict[str, tuple[bool, bool]] = {}
_KINDS_LIMIT = 4096
_kinds_lock = threading.Lock()


def _kind(filename: str) -> tuple[bool, bool]:
    """(poolwatch's own module, library code) for a code object's file name."""
    kind = _KINDS.get(filename)
    if kind is not None:
        return kind
    if filename.startswith("<"):  # <frozen ...>, <string>: the interpreter's or generated
        path = filename
        ours = False
        library = filename.startswith("<frozen")
    else:
        path = os.path.abspath(filename)
        ours = path.startswith(_PACKAGE_DIR) and path not in _APPLICATION_FILES
        library = ours or (
            path not in _APPLICATION_FILES
            and (path.startswith(_LIBRARY_DIRS) or any(m in path for m in _MARKERS))
        )
    kind = (ours, library)
    with _kinds_lock:
        if len(_KINDS) >= _KINDS_LIMIT:
            _KINDS.clear()
        _KINDS[filename] = kind
    return kind


def _task_frames(chain: list[tuple[CodeType, int]]) -> list[tuple[CodeType, int]]:
    """The frames from the task's own function inwards (``chain`` is outermost first).

    A worker thread starts in ``threading`` and runs poolwatch's loop, which calls the
    task; a task run by the submitting thread (``caller_runs``) sits below poolwatch's
    ``submit``. Either way the task starts at the first frame past the first run of
    poolwatch frames. A thread with no poolwatch frame is shown whole.
    """
    index = 0
    n = len(chain)
    while index < n and not _kind(chain[index][0].co_filename)[0]:
        index += 1
    if index == n:
        return chain
    while index < n and _kind(chain[index][0].co_filename)[0]:
        index += 1
    return chain[index:]


def _source(filename: str, line: int, limit: int) -> str | None:
    text = linecache.getline(filename, line).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def capture_stack(
    thread_ident: int,
    *,
    task_id: str,
    pool: str,
    thread: str,
    max_frames: int = 64,
    max_source: int = 200,
) -> TaskStack | None:
    """The stack of the thread ``thread_ident`` now, as the task ``task_id``'s.

    ``None`` when that thread has no frame any more (it ended). Keeps the innermost
    ``max_frames`` frames of the task (``truncated`` says whether outer ones were cut)
    and at most ``max_source`` characters of each source line. Safe to call from any
    thread; the thread looked at is not stopped or disturbed.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
    if max_source < 1:
        raise ValueError(f"max_source must be >= 1, got {max_source!r}")
    # Documented, if underscored (CPython-specific): what faulthandler and debuggers use.
    frame: FrameType | None = sys._current_frames().get(thread_ident)  # noqa: SLF001
    taken_at = time.time()
    if frame is None:
        return None
    # Only (code, line) pairs while walking: cheap, and no frame is kept alive after.
    chain: list[tuple[CodeType, int]] = []
    while frame is not None:
        chain.append((frame.f_code, frame.f_lineno or 0))
        frame = frame.f_back
    del frame
    chain.reverse()
    own = _task_frames(chain)
    truncated = len(own) > max_frames
    if truncated:
        own = own[-max_frames:]
    frames = tuple(
        StackFrame(
            file=code.co_filename,
            line=line,
            function=code.co_qualname,
            source=_source(code.co_filename, line, max_source),
            library=_kind(code.co_filename)[1],
        )
        for code, line in own
    )
    return TaskStack(
        task_id=task_id,
        pool=pool,
        thread=thread,
        taken_at=taken_at,
        frames=frames,
        truncated=truncated,
    )
