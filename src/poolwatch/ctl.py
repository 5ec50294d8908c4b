"""``poolwatch ctl``: inspect and change a running service's pools and tasks over its API.

Tables for people, ``--json`` for scripts (the API's own JSON, unchanged). Exit codes:
0 on success, 1 when the service refused the request (its message is printed), 2 for
bad arguments, 3 when the service cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from poolwatch.ctlformat import pool_details, pools_table, stack_listing, task_details, tasks_table

__all__ = ["DEFAULT_URL", "URL_ENV", "Client", "CtlError", "add_parser", "run"]

URL_ENV = "POOLWATCH_URL"
TOKEN_ENV = "POOLWATCH_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class CtlError(Exception):
    """A failed request; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Client:
    """A small JSON client for the service's ``/api``."""

    url: str
    token: str | None = None
    timeout: float = 30.0

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        target = self.url.rstrip("/") + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(target, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _decode(response.read(), target)
        except urllib.error.HTTPError as exc:
            raise CtlError(_refusal(exc, method, path), EXIT_REFUSED) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CtlError(
                f"cannot reach the poolwatch service at {self.url}: {reason}; check that it "
                f"is running and that --url (or {URL_ENV}) points at it",
                EXIT_UNREACHABLE,
            ) from None


def _decode(raw: bytes, target: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise CtlError(
            f"{target} did not answer with JSON; is --url the address of a poolwatch service?",
            EXIT_REFUSED,
        ) from None


def _refusal(exc: urllib.error.HTTPError, method: str, path: str) -> str:
    try:
        error = json.loads(exc.read())["error"]
        return f"{error['message']} ({error['code']}, HTTP {exc.code})"
    except (ValueError, KeyError, TypeError):
        return f"{method} {path} failed with HTTP {exc.code} {exc.reason}"
    finally:
        exc.close()


def _quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# -- argument parsing ----------------------------------------------------------------------


def _setting(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (``none``/``null`` clear a limit; bare words are
    strings): ``queue_capacity=50``, ``rejection_policy=discard``."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE such as queue_capacity=50, got {text!r}"
        )
    if raw.lower() in ("none", "null"):
        return key, None
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
    return int(text)


def _common() -> argparse.ArgumentParser:
    """Options allowed both before and after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS
    common.add_argument(
        "--url", default=suppress, help=f"service address (default ${URL_ENV} or {DEFAULT_URL})"
    )
    common.add_argument(
        "--token", default=suppress, help=f"API token for changes (default ${TOKEN_ENV})"
    )
    common.add_argument(
        "--json", action="store_true", default=suppress, help="print the API's JSON"
    )
    common.add_argument(
        "--timeout", type=float, default=suppress, help="seconds to wait for an answer (30)"
    )
    return common


def add_parser(commands: Any) -> None:
    """Add ``ctl`` to the ``poolwatch`` command's subparsers."""
    common = _common()
    ctl = commands.add_parser(
        "ctl",
        parents=[common],
        help="inspect and change a running service",
        description="Inspect and change the pools and tasks of a running poolwatch service "
        "through its HTTP API.",
    )
    groups = ctl.add_subparsers(dest="group", metavar="pools|tasks", required=True)
    pools = groups.add_parser("pools", help="list, inspect and change pools").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )

    def leaf(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text)
        return parser

    leaf(pools, "list", "one line per pool")
    leaf(pools, "show", "every setting and count of one pool").add_argument("name")
    resize = leaf(pools, "resize", "change max_workers")
    resize.add_argument("name")
    resize.add_argument("max_workers", type=_positive)
    change = leaf(pools, "set", "change settings: KEY=VALUE ...")
    change.add_argument("name")
    change.add_argument("settings", nargs="+", type=_setting, metavar="KEY=VALUE")
    leaf(pools, "pause", "start nothing new; running tasks finish").add_argument("name")
    leaf(pools, "resume", "start queued tasks again").add_argument("name")
    remove = leaf(pools, "remove", "shut a pool down (draining it) and remove it")
    remove.add_argument("name")
    remove.add_argument(
        "--cancel-pending", action="store_true", help="cancel queued tasks instead of running them"
    )

    tasks = groups.add_parser("tasks", help="list, inspect and cancel tasks").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    listing = leaf(tasks, "list", "recent tasks, newest first")
    listing.add_argument("--pool")
    listing.add_argument("--state")
    listing.add_argument("--name")
    listing.add_argument("--page", type=_positive, default=1)
    listing.add_argument("--per-page", type=_positive, default=20)
    leaf(tasks, "show", "one task, with its error and traceback").add_argument("task_id")
    leaf(tasks, "cancel", "cancel a queued task or ask a running one to stop").add_argument(
        "task_id"
    )
    leaf(tasks, "stack", "the live stack of a running task").add_argument("task_id")


# -- commands ------------------------------------------------------------------------------

Render = Callable[[Any], str]


def _pool_path(args: Any) -> str:
    return f"/api/pools/{_quoted(args.name)}"


def _call(client: Client, args: Any) -> tuple[Any, Render]:
    """Send the request ``args`` describe; the answer and how to show it to people."""
    if args.group == "pools":
        action = args.action
        if action == "list":
            return client.request("GET", "/api/pools"), lambda data: pools_table(data["data"])
        if action == "show":
            return client.request("GET", _pool_path(args)), pool_details
        if action == "resize":
            body: dict[str, Any] = {"max_workers": args.max_workers}
        elif action == "set":
            body = dict(args.settings)
        elif action in ("pause", "resume"):
            body = {"paused": action == "pause"}
        else:  # remove
            query = {"cancel_pending": "true" if args.cancel_pending else "false"}
            answer = client.request("DELETE", _pool_path(args), query=query)
            return answer, lambda data: f"removed pool {data['name']}\n" + pool_details(data)
        return client.request("PATCH", _pool_path(args), body), pool_details
    task_path = f"/api/tasks/{_quoted(getattr(args, 'task_id', ''))}"
    if args.action == "list":
        query = {"page": args.page, "per_page": args.per_page}
        query.update({k: v for k in ("pool", "state", "name") if (v := getattr(args, k))})
        return client.request("GET", "/api/tasks", query=query), tasks_table
    if args.action == "show":
        return client.request("GET", task_path), task_details
    if args.action == "cancel":
        answer = client.request("POST", task_path + "/cancel")
        return answer, lambda data: f"{args.task_id}: {data['result']}"
    return client.request("GET", task_path + "/stack"), stack_listing


def run(args: Any, env: dict[str, str] | None = None, out: TextIO | None = None) -> int:
    """Run a parsed ``ctl`` command line; returns the exit code."""
    env = dict(os.environ) if env is None else env
    out = out or sys.stdout
    client = Client(
        url=getattr(args, "url", None) or env.get(URL_ENV) or DEFAULT_URL,
        token=getattr(args, "token", None) or env.get(TOKEN_ENV) or None,
        timeout=getattr(args, "timeout", 30.0),
    )
    try:
        answer, render = _call(client, args)
    except CtlError as exc:
        print(f"poolwatch ctl: error: {exc}", file=sys.stderr)
        return exc.code
    if getattr(args, "json", False):
        out.write(json.dumps(answer, indent=2) + "\n")
    else:
        text = render(answer)
        out.write(text if text.endswith("\n") else text + "\n")
    return 0
