"""CPython 3.13's own executor tests, run against poolwatch and the stdlib.

Two selections (``Kind``), each run with unittest under a 3.13 interpreter (``.venv313``,
made by ``scripts/test.sh``), one ``runner.py`` process per module, a few at a time:

- ``thread``: the thread-pool classes of ``test_thread_pool``, ``test_shutdown``,
  ``test_wait``, ``test_as_completed``, ``test_init`` and all of ``test_future``;
- ``process``: the process-pool classes on the ``spawn`` and ``forkserver`` start methods
  of ``test_process_pool``, ``test_shutdown``, ``test_wait``, ``test_as_completed`` and
  ``test_init``, but the tests of deliberate differences (``Kind.excluded``, with why).

``substitute/sitecustomize.py`` puts poolwatch's executors in the stdlib's place, also in
the fresh interpreters the tests start, and records every executor created so a run can
show it really tested poolwatch. A test that outlives its watchdog is reported as hung
with every thread's stack, and its module goes on after it.

Also a command line, standard library only (``python3`` of any version)::

    python3 tests/cpython/harness.py find-python        # the 3.13 interpreter, or exit 1
    python3 tests/cpython/harness.py run [--control] [--kind process]   # one run's report
    PYTHONPATH=/other/src python3 tests/cpython/harness.py run   # poolwatch from there
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RUNNER = HERE / "runner.py"
SUBSTITUTE_DIR = HERE / "substitute"
VENV = ROOT / ".venv313"


@dataclass(frozen=True)
class Kind:
    """One selection of CPython's tests: the executor class they test and where.

    ``min_tests``: 3.13.0 ships that many such tests; later 3.13 releases only add to
    them. ``fresh_interpreter_tests`` run a script in a fresh interpreter: each must
    create poolwatch's executor there too. ``excluded``: test method names left out of
    both runs because poolwatch differs there on purpose, with why (README and
    docs/process-pools.md list them too).
    """

    name: str
    executor: str  # the stdlib class substituted and guarded
    modules: tuple[str, ...]
    min_tests: int
    fresh_interpreter_tests: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)
    budget: float = 100.0  # seconds for both runs side by side


THREAD = Kind(
    "thread",
    "ThreadPoolExecutor",
    ("test_thread_pool", "test_shutdown", "test_wait", "test_as_completed", "test_init",
     "test_future"),
    65,
    (
        "test_shutdown.ThreadPoolShutdownTest.test_interpreter_shutdown",
        "test_shutdown.ThreadPoolShutdownTest.test_submit_after_interpreter_shutdown",
        "test_shutdown.ThreadPoolShutdownTest.test_hang_gh83386",
        "test_shutdown.ThreadPoolShutdownTest.test_cancel_futures_wait_false",
    ),
)  # fmt: skip
PROCESS = Kind(
    "process",
    "ProcessPoolExecutor",
    ("test_process_pool", "test_shutdown", "test_wait", "test_as_completed", "test_init"),
    # 42 + 22 + 16 + 10 + 4 on spawn and forkserver, less the excluded tests' 4.
    90,
    tuple(
        f"test_shutdown.ProcessPool{method}ProcessPoolShutdownTest.{test}"
        for method in ("Spawn", "Forkserver")
        for test in ("test_interpreter_shutdown", "test_submit_after_interpreter_shutdown")
    ),
    {
        "test_killed_child": (
            "a killed child breaks the stdlib's pool; poolwatch fails that child's task "
            "only, replaces the child and goes on"
        ),
        "test_max_tasks_per_child_defaults_to_spawn_context": (
            "checks the stdlib's default start method, spawn; poolwatch's is forkserver"
        ),
    },
    # Every test starts up to five processes: about 100 s on two busy cores.
    budget=150.0,
)
KINDS = {k.name: k for k in (THREAD, PROCESS)}
PER_TEST_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0  # for the interpreter to exit after its tests
PARALLEL = 4
OUTPUT_TAIL = 2000
CAUSE_WIDTH = 240


# -- finding the interpreter ------------------------------------------------------------


def find_python313() -> str | None:
    """``POOLWATCH_PY313``, else pyenv's newest 3.13.x, else ``python3.13`` on PATH."""
    explicit = os.environ.get("POOLWATCH_PY313")
    if explicit:
        return explicit
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates = glob.glob(os.path.join(pyenv_root, "versions", "3.13.*", "bin", "python3.13"))
    candidates = [c for c in candidates if os.access(c, os.X_OK)]
    if candidates:
        return max(
            candidates,
            key=lambda c: [int(p) for p in c.split("/")[-3][5:].split(".") if p.isdigit()],
        )
    return shutil.which("python3.13")


def interpreter_problem(python: str) -> str | None:
    """Why ``python`` cannot run the suite (not 3.13, no test package), or None."""
    probe = "import sys; print(*sys.version_info[:2]); import test.test_concurrent_futures.util"
    try:
        done = subprocess.run(
            [python, "-c", probe], check=False, capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        return f"{python} cannot run: {exc}"
    version = done.stdout.split()[:2]
    if version and version != ["3", "13"]:
        return f"{python} is Python {'.'.join(version)}, not 3.13"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (
            f"{python} cannot import test.test_concurrent_futures ({last}); "
            "Debian ships it in libpython3.13-testsuite"
        )
    return None


def venv_python() -> Path:
    return VENV / "bin" / "python"


# -- results ----------------------------------------------------------------------------


@dataclass
class Outcome:
    id: str
    outcome: str  # passed, failed, error, skipped, env changed, hung, crashed, not run
    detail: str = ""

    @property
    def cause(self) -> str:
        """The last line of the detail: usually the exception."""
        lines = [ln.strip() for ln in self.detail.strip().splitlines() if ln.strip()]
        line = lines[-1] if lines else self.outcome
        return line if len(line) <= CAUSE_WIDTH else line[: CAUSE_WIDTH - 3] + "..."


@dataclass
class SuiteRun:
    """What one run (stdlib control or poolwatch) found."""

    label: str
    substitute: bool
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    executors: list[dict[str, object]] = field(default_factory=list)
    runner_pids: set[int] = field(default_factory=set)
    stdlib: str = ""  # the interpreter's library directory, left out of reports
    seconds: float = 0.0
    kind: Kind = THREAD

    @property
    def failures(self) -> list[Outcome]:
        """Every test that neither passed nor skipped itself (on a platform it does not
        apply to, say: the control must skip the same ones)."""
        return [o for o in self.outcomes.values() if o.outcome not in ("passed", "skipped")]

    @property
    def skipped(self) -> list[str]:
        return sorted(o.id for o in self.outcomes.values() if o.outcome == "skipped")

    @property
    def passed(self) -> int:
        return sum(o.outcome == "passed" for o in self.outcomes.values())

    def substitution_problems(self) -> list[str]:
        """Where the run did not test what it claims, from the guard's record."""
        cls = self.kind.executor
        made = [
            e
            for e in self.executors
            if e["kind"] != "startup" and e.get("executor", THREAD.executor) == cls
        ]
        stdlib = [e for e in made if e["kind"] == "stdlib"]
        if not self.substitute:
            if not any(e["pid"] in self.runner_pids for e in stdlib):
                return [f"the guard saw no stdlib {cls} in the control run"]
            return []
        problems = sorted(
            {
                f"substitution failed at start-up: {e['error']}"
                for e in self.executors
                if "error" in e
            }
        )
        problems += sorted(
            {
                f"poolwatch.{cls} does not exist: ran through the {e['substitute']}"
                for e in self.executors
                if e["kind"] == "startup" and "shim" in str(e["substitute"])
            }
        )
        if stdlib:
            tests = sorted({str(e["test"] or "start-up") for e in stdlib})
            problems.append(
                f"the stdlib {cls} was created {len(stdlib)} times, in "
                f"{len(tests)} tests (first: {tests[0]})"
            )
        managed = [e for e in made if e["kind"] in ("subclass", "shim")]
        problems += [
            f"{e['test']} created {e['class']}, not a poolwatch executor"
            for e in managed
            if not str(e["class"]).startswith("poolwatch.")
        ]
        if not any(e["pid"] in self.runner_pids for e in managed):
            problems.append("no poolwatch executor was created in the test processes")
        for test_id in self.kind.fresh_interpreter_tests:
            if not any(e["test"] == test_id and e["pid"] not in self.runner_pids for e in managed):
                problems.append(f"{test_id}: its fresh interpreter created no poolwatch executor")
        return problems

    def substituted_from(self) -> str:
        starts = {
            f"{e['substitute']} from {e.get('poolwatch')}"
            for e in self.executors
            if e["kind"] == "startup" and e["substitute"]
        }
        if not self.substitute:
            return "the stdlib"
        return "; ".join(sorted(starts)) or "nothing substituted"

    def report(self, *, details: bool = True) -> str:
        text = self.full_report(details=details)
        return text.replace(self.stdlib + "/", "") if self.stdlib else text

    def full_report(self, *, details: bool) -> str:
        lines = [
            f"{self.label} ({self.kind.name} kind): {self.passed} of {len(self.outcomes)} "
            f"passed in {self.seconds:.0f}s, testing {self.substituted_from()}"
        ]
        lines += [f"  EXCLUDED  {t}: {why}" for t, why in self.kind.excluded.items()]
        lines += [f"  {o.outcome.upper():>11}  {o.id}: {o.cause}" for o in self.failures]
        lines += [f"      SKIPPED  {i}: {self.outcomes[i].cause}" for i in self.skipped]
        lines += [f"  PROBLEM  {p}" for p in self.problems + self.substitution_problems()]
        if details:
            for o in self.failures:
                lines.append(f"--- {o.id} ({o.outcome})")
                lines.extend("    " + ln for ln in o.detail.strip().splitlines())
        return "\n".join(lines)


# -- running ------------------------------------------------------------------------------


@dataclass
class ModuleJob:
    """One module of one run: restarted after a hung or crashed test, without it."""

    run: SuiteRun
    module: str
    workdir: Path
    env: dict[str, str]
    python: str
    attempt: int = 0
    selected: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    finished: bool = False

    def path(self, kind: str) -> Path:
        return self.workdir / f"{self.module}.{self.attempt}.{kind}"

    def start(self) -> None:
        self.attempt += 1
        skip = json.dumps([i for i in self.run.outcomes if i.split(".")[0] == self.module])
        cmd = [
            self.python,
            str(RUNNER),
            "--module",
            self.module,
            "--skip",
            skip,
            "--events",
            str(self.path("events")),
            "--hang-dump",
            str(self.path("dump")),
            "--per-test-timeout",
            str(PER_TEST_TIMEOUT),
            "--exit-timeout",
            str(EXIT_TIMEOUT),
            "--exclude",
            json.dumps(sorted(self.run.kind.excluded)),
        ]
        with open(self.path("out"), "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """End the runner and whatever it started (its own session) that still runs."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def absorb(self, events: list[dict[str, object]]) -> tuple[str | None, bool]:
        """Take in a runner's events: the test it started and never finished, and
        whether it got to the end."""
        started = None
        done = False
        for event in events:
            if event["event"] == "selected":
                self.selected = self.selected or [str(i) for i in event["ids"]]  # type: ignore[attr-defined]
                self.run.runner_pids.add(int(str(event["pid"])))
                self.run.stdlib = str(event["stdlib"])
            elif event["event"] == "start":
                started = str(event["id"])
            elif event["event"] == "result":
                test_id = str(event["id"])
                self.run.outcomes[test_id] = Outcome(
                    test_id, str(event["outcome"]), str(event["detail"])
                )
                started = None if started == test_id else started
            elif event["event"] == "fixture":
                self.run.problems.append(
                    f"{self.module}: {event['id']} {event['outcome']}:\n{event['detail']}"
                )
            elif event["event"] == "done":
                done = True
        return started, done

    def collect(self, *, out_of_time: bool = False) -> None:
        """Read what the finished (or killed) runner wrote; a test it started and never
        finished is hung (the watchdog's dump says where) or crashed its interpreter."""
        self.kill()
        started, done = self.absorb(read_jsonl(self.path("events")))
        dump = summarise_dump(self.path("dump"))
        output = tail(self.path("out"))
        if done:
            self.finished = True
            if dump:
                self.run.problems.append(
                    f"{self.module}: the interpreter did not exit within "
                    f"{EXIT_TIMEOUT:.0f}s after its tests:\n{dump}"
                )
            return
        if started is None:
            # A module's set-up or clean-up: the watchdog guards those too.
            what = "ran out of time" if out_of_time else f"exited with {self.proc_rc()}"
            self.run.problems.append(
                f"{self.module}: the runner {what} outside any test:\n{dump or output}"
            )
            self.finished = True
            return
        if out_of_time:
            self.run.outcomes[started] = Outcome(started, "hung", "the run's time budget ended")
        elif dump:
            self.run.outcomes[started] = Outcome(started, "hung", f"{dump}\n{hang_cause(dump)}")
        else:
            self.run.outcomes[started] = Outcome(
                started, "crashed", f"{output}\nthe runner exited with {self.proc_rc()}"
            )
        self.finished = out_of_time or not self.remaining()

    def remaining(self) -> list[str]:
        return [i for i in self.selected or [] if i not in self.run.outcomes]

    def proc_rc(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


def read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line cut by a killed process
            events.append(json.loads(line))
    return events


def summarise_dump(path: Path) -> str:
    """A faulthandler dump, shortened: the main thread (dumped last) in full, the first
    frames of the others."""
    if not path.exists():
        return ""
    blocks = [b.strip().splitlines() for b in path.read_text(errors="replace").split("\n\n")]
    blocks = [b for b in blocks if b]
    if not blocks:
        return ""
    others = ["\n".join(b[:3]) for b in blocks[:-1]]
    return "\n".join([*others, "\n".join(blocks[-1])])


def hang_cause(dump: str) -> str:
    """One line: where the test's own thread (dumped last) was stuck."""
    main = dump.rsplit("\nThread ", maxsplit=1)[-1].splitlines()[1:]
    frames = [ln.strip().removeprefix("File ").replace('"', "") for ln in main]
    where = [f for f in frames if "test_concurrent_futures" in f][:1]
    inner = frames[:1]
    return f"no result within {PER_TEST_TIMEOUT:.0f}s, stuck at {' <- '.join(inner + where)}"


def tail(path: Path) -> str:
    if not path.exists():
        return ""
    return path.read_text(encoding="utf-8", errors="replace").strip()[-OUTPUT_TAIL:]


def environment(substitute: bool, log: Path, kind: Kind = THREAD) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POOLWATCH_CONFORMANCE")}
    # The caller's PYTHONPATH (say, another source tree) goes first, made absolute: the
    # runners work in their own directory.
    front = os.environ.get("PYTHONPATH", "").split(os.pathsep) if substitute else []
    paths = [os.path.abspath(p) for p in front if p] + [str(SUBSTITUTE_DIR)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["POOLWATCH_CONFORMANCE"] = "substitute" if substitute else "observe"
    env["POOLWATCH_CONFORMANCE_LOG"] = str(log)
    env["POOLWATCH_CONFORMANCE_KIND"] = kind.name
    env.pop("PYTHONHOME", None)
    return env


@contextlib.contextmanager
def scheduled(jobs: list[ModuleJob]) -> Iterator[None]:
    try:
        yield
    finally:
        for job in jobs:
            job.kill()


def run_suites(python: str, substitutes: list[bool], kind: Kind = THREAD) -> list[SuiteRun]:
    """One run of ``kind``'s selection per entry (True: poolwatch in the stdlib's
    place), side by side."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="poolwatch-cpython-") as tmp:
        runs: list[SuiteRun] = []
        jobs: list[ModuleJob] = []
        for n, substitute in enumerate(substitutes):
            label = "poolwatch" if substitute else "stdlib control"
            run = SuiteRun(label, substitute, kind=kind)
            workdir = Path(tmp) / str(n)
            workdir.mkdir()
            env = environment(substitute, workdir / "executors.jsonl", kind)
            runs.append(run)
            jobs += [ModuleJob(run, m, workdir, env, python) for m in kind.modules]
        with scheduled(jobs):
            drive(jobs, started + kind.budget)
        for n, run in enumerate(runs):
            run.executors = read_jsonl(Path(tmp) / str(n) / "executors.jsonl")
            run.seconds = time.monotonic() - started
    return runs


def drive(jobs: list[ModuleJob], deadline: float) -> None:
    """Keep up to PARALLEL runners going until every module has finished or time is up."""
    while not all(j.finished for j in jobs):
        for job in jobs:
            if job.proc is not None and job.proc.poll() is not None:
                job.collect()
                job.proc = None
        if time.monotonic() > deadline:
            for job in jobs:
                if job.proc is not None:
                    job.collect(out_of_time=True)
                job.finished = True
            break
        busy = sum(1 for j in jobs if j.proc is not None)
        idle = [j for j in jobs if not j.finished and j.proc is None]
        for job in idle[: max(0, PARALLEL - busy)]:
            job.start()
        time.sleep(0.05)  # ok: polls child processes' exit; no thread gates on it
    for job in jobs:
        job.run.outcomes.update(
            {i: Outcome(i, "not run", "the run's time budget ended") for i in job.remaining()}
        )


# -- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("find-python", help="print the 3.13 interpreter used for .venv313")
    run = sub.add_parser("run", help="run the suite and print its report")
    run.add_argument("--control", action="store_true", help="the stdlib, no substitution")
    run.add_argument("--kind", choices=sorted(KINDS), default=THREAD.name)
    run.add_argument("--python", default=str(venv_python()), help="default: .venv313's")
    args = parser.parse_args(argv)
    if args.command == "find-python":
        python = find_python313()
        if python is None or interpreter_problem(python):
            print(interpreter_problem(python) if python else "no Python 3.13", file=sys.stderr)
            return 1
        print(python)
        return 0
    (result,) = run_suites(args.python, [not args.control], KINDS[args.kind])
    print(result.report())
    return 0 if not result.failures and not result.substitution_problems() else 1


if __name__ == "__main__":
    raise SystemExit(main())
