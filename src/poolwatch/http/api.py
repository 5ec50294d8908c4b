"""The ``/api`` routes: pools, tasks, task types, totals and server info.

Handlers are async and call the engine directly where it only takes a pool lock
briefly; anything that can wait (removing a pool, a ``caller_runs`` submission) runs on
threads of its own (:mod:`poolwatch.http.blocking`), so neither the event loop nor
scrapes and reads ever wait behind it. Reads cost O(page size).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from poolwatch.errors import PoolExistsError, RejectedError, TaskNotRunningError
from poolwatch.family import PoolFamily
from poolwatch.http.auth import AccessPolicy, audit
from poolwatch.http.blocking import BlockingRunner
from poolwatch.http.errors import ApiError
from poolwatch.http.fields import FieldError, show
from poolwatch.http.lifecycle import Lifecycle
from poolwatch.http.schemas import (
    DELETE_QUERY,
    POOL_CREATE,
    POOL_PATCH,
    TASK_SUBMIT,
    bind_task_arguments,
    parse_body,
    parse_query,
    parse_task_query,
)
from poolwatch.http.serialize import (
    JSONResponse,
    dumps,
    pagination,
    pool_json,
    stack_json,
    stats_json,
    task_json_text,
    task_type_json,
    totals_json,
    utf8,
)
from poolwatch.multiproc import ProcessPublisher, single_process_info
from poolwatch.records import PoolState
from poolwatch.tasks import TaskType, get_task_type, registered_tasks

if TYPE_CHECKING:
    from poolwatch.manager import PoolManager
    from poolwatch.pool import PoolBase

__all__ = ["ControlApi"]

Handler = Callable[[Request], Awaitable[Response]]

_RETRY_AFTER = {"Retry-After": "1"}
_DROPPING_POLICIES = frozenset({"discard", "discard_oldest"})


#: Longest integer literal accepted in a body (CPython's default int-from-text limit).
_MAX_INT_DIGITS = 4300
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[^/;\s]+\+)?json", re.IGNORECASE)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


class _BodyError(ValueError):
    """A JSON body that parses but cannot be accepted; the message says why."""


def _reject_constant(token: str) -> Any:
    raise _BodyError(f"{token} is not valid JSON; send a finite number or null")


def _parse_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > _MAX_INT_DIGITS:
        raise _BodyError(
            f"a number in the request body has too many digits ({digits}); "
            f"send numbers of at most {_MAX_INT_DIGITS} digits"
        )
    try:
        return int(text)
    except ValueError:  # the interpreter's own digit limit is lower than ours
        raise _BodyError(
            f"a number in the request body has too many digits ({digits}); send a shorter one"
        ) from None


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BodyError(
            f"the number {show(text, 40)} in the request body is too large to represent; "
            "send a finite number"
        )
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _BodyError(
                    f"the key {show(key)} appears more than once in an object of the request "
                    "body; send each key once"
                )
            seen.add(key)
    return result


def _api_url(request: Request, collection: str, key: str) -> str:
    """The path of an /api resource, under whatever prefix the app is mounted at.

    Inside the ``/api`` mount Starlette's ``root_path`` ends with ``/api``; building the
    path from it is much cheaper than ``url_for``, which walks every route.
    """
    return f"{request.scope.get('root_path', '')}/{collection}/{quote(key, safe='')}"


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"request body is larger than {limit} bytes; send a smaller JSON object",
    )


def _json_text(text: str) -> Response:
    """A 200 response of JSON text already written (as ``JSONResponse`` would send it)."""
    return Response(utf8(text), media_type="application/json")


def _invalid(exc: FieldError) -> ApiError:
    return ApiError(422, "invalid_field", exc.message)


def _check_body_headers(headers: Headers, limit: int) -> None:
    """400 unless the body is declared as JSON of a well-formed length; 413 past ``limit``."""
    content_type = headers.get("content-type")
    media_type = (content_type or "").partition(";")[0].strip()
    if not _JSON_MEDIA_TYPE.fullmatch(media_type):
        # Also what stops a cross-site form or text/plain fetch (no CORS preflight).
        got = f"got {show(content_type)}" if content_type is not None else "got none"
        raise ApiError(
            400,
            "unsupported_media_type",
            f"request body must be sent with Content-Type: application/json, {got}",
        )
    declared = headers.get("content-length")
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared):
            raise ApiError(
                400,
                "bad_request",
                f"Content-Length {show(declared)} is not a number of bytes; send 1 to 19 "
                "ASCII digits",
            )
        if int(declared) > limit:
            raise _too_large(limit)


def _decode_json(body: bytearray) -> Any:
    """The JSON value of a whole request body, or 400 saying what is wrong with it."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "request body is not UTF-8 text") from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            "invalid_json",
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except _BodyError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    except ValueError as exc:  # pragma: no cover - the decoder's own, none known
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "request body is nested too deeply") from None


def _task_type(task_name: str) -> TaskType:
    """The registered task type of that name, or 422 listing the known ones."""
    try:
        return get_task_type(task_name)
    except KeyError:
        known = ", ".join(sorted(registered_tasks())[:20]) or "none"
        raise ApiError(
            422,
            "unknown_task",
            f"task {show(task_name)} is not registered; registered tasks: {known} "
            "(GET /api/task-types)",
        ) from None


class ControlApi:
    """The control API of one manager, as a list of routes to mount under ``/api``."""

    def __init__(
        self,
        manager: PoolManager,
        *,
        policy: AccessPolicy,
        lifecycle: Lifecycle,
        max_body_bytes: int,
        version: str,
        publisher: ProcessPublisher | None = None,
    ) -> None:
        self.manager = manager
        self.publisher = publisher  # set in a multi-process server: stats are server-wide
        self.policy = policy
        self.lifecycle = lifecycle
        self.max_body_bytes = max_body_bytes
        self.version = version
        self.blocking = BlockingRunner(lifecycle)

    def routes(self) -> list[Route]:
        """The routes, busiest first (they are tried in order; no two overlap)."""
        m = self._mutation
        return [
            Route("/tasks", self.list_tasks, methods=["GET"], name="tasks"),
            Route(
                "/pools",
                self._by_method(GET=self.list_pools, POST=m("pool.create", self.create_pool)),
                methods=["GET", "POST"],
                name="pools",
            ),
            Route(
                "/pools/{name}/tasks",
                m("task.submit", self.submit_task),
                methods=["POST"],
                name="pool_tasks",
            ),
            Route("/tasks/{task_id}", self.get_task, methods=["GET"], name="task"),
            Route(
                "/pools/{name}",
                self._by_method(
                    GET=self.get_pool,
                    PATCH=m("pool.update", self.update_pool),
                    DELETE=m("pool.delete", self.delete_pool),
                ),
                methods=["GET", "PATCH", "DELETE"],
                name="pool",
            ),
            Route(
                "/tasks/{task_id}/cancel",
                m("task.cancel", self.cancel_task),
                methods=["POST"],
                name="task_cancel",
            ),
            Route("/tasks/{task_id}/stack", self.task_stack, methods=["GET"], name="task_stack"),
            Route("/stats", self.stats, methods=["GET"], name="stats"),
            Route("/task-types", self.task_types, methods=["GET"], name="task_types"),
            Route("/info", self.info, methods=["GET"]),
        ]

    # -- plumbing -------------------------------------------------------------------

    @staticmethod
    def _by_method(**handlers: Handler) -> Handler:
        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        dispatch.__name__ = "_".join(h.__name__ for h in handlers.values())
        return dispatch

    def _mutation(self, action: str, handler: Handler) -> Handler:
        """Authorize, run and audit-log a state-changing handler."""

        async def endpoint(request: Request) -> Response:
            authenticated = False
            target = request.path_params.get("name") or request.path_params.get("task_id")
            try:
                authenticated = self.policy.authorize(request)
                response = await handler(request)
            except ApiError as exc:
                target = getattr(request.state, "audit_target", target)
                audit(
                    request,
                    action=action,
                    target=target,
                    status=exc.status,
                    authenticated=authenticated,
                    result=exc.code,
                )
                raise
            target = getattr(request.state, "audit_target", target)
            audit(
                request,
                action=action,
                target=target,
                status=response.status_code,
                authenticated=authenticated,
                result="ok",
            )
            return response

        endpoint.__name__ = handler.__name__
        return endpoint

    async def _read_json(self, request: Request) -> Any:
        """The decoded body: 413 past the size limit (declared or streamed), 400 if not JSON."""
        limit = self.max_body_bytes
        _check_body_headers(request.headers, limit)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
        return _decode_json(body)

    async def _body(self, request: Request, fields: Any) -> dict[str, Any]:
        data = await self._read_json(request)
        try:
            return parse_body(data, fields)
        except FieldError as exc:
            raise _invalid(exc) from None

    def _pool(self, name: str) -> PoolBase:
        try:
            return self.manager.get_pool(name)
        except KeyError:
            raise ApiError(
                404, "pool_not_found", f"no pool named {show(name)}; GET /api/pools lists them"
            ) from None

    def _refuse_while_stopping(self) -> None:
        if self.lifecycle.shutting_down:
            raise ApiError(
                503,
                "shutting_down",
                "the server is shutting down and accepts no new work; retry on another instance",
                headers=_RETRY_AFTER,
            )

    # -- server ---------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "version": self.version,
                "read_only": self.policy.read_only,
                "auth_required": self.policy.auth_required,
                "mutations_allowed": self.policy.mutations_allowed,
            }
        )

    async def stats(self, request: Request) -> Response:
        publisher = self.publisher
        if publisher is None:
            totals = totals_json(pool.stats() for pool in self.manager.pools())
            return JSONResponse({**totals, "server": single_process_info()})
        view = await run_in_threadpool(publisher.server)
        return JSONResponse(stats_json(view.totals, publisher.server_info(view)))

    async def task_types(self, request: Request) -> Response:
        types = registered_tasks()
        return JSONResponse({"data": [task_type_json(types[name]) for name in sorted(types)]})

    # -- pools ----------------------------------------------------------------------

    async def list_pools(self, request: Request) -> Response:
        pools = sorted(self.manager.pools(), key=lambda p: p.name)
        return JSONResponse({"data": [pool_json(pool.stats(), pool.kind) for pool in pools]})

    async def get_pool(self, request: Request) -> Response:
        pool = self._pool(request.path_params["name"])
        return JSONResponse(pool_json(pool.stats(), pool.kind))

    async def create_pool(self, request: Request) -> Response:
        self._refuse_while_stopping()
        body = await self._body(request, POOL_CREATE)
        name = body.pop("name")
        request.state.audit_target = name
        try:
            pool = self.manager.create_pool(name, **body)
        except PoolExistsError:
            raise ApiError(
                409,
                "pool_exists",
                f"a pool named {show(name)} already exists; choose another name or PATCH it",
            ) from None
        except (ValueError, TypeError) as exc:
            raise ApiError(422, "invalid_field", str(exc)) from None
        except RuntimeError as exc:
            raise ApiError(503, "shutting_down", str(exc), headers=_RETRY_AFTER) from None
        location = _api_url(request, "pools", name)
        return JSONResponse(
            pool_json(pool.stats(), pool.kind), status_code=201, headers={"Location": location}
        )

    async def update_pool(self, request: Request) -> Response:
        pool = self._pool(request.path_params["name"])
        changes = await self._body(request, POOL_PATCH)
        paused = changes.pop("paused", None)
        # configure() and pause() accept a stopped pool silently: refuse here instead of
        # reporting a change that means nothing.
        state = pool.state
        if state in (PoolState.SHUTTING_DOWN, PoolState.TERMINATED):
            raise ApiError(
                409,
                "pool_shut_down",
                f"pool {show(pool.name)} is {state.value.replace('_', ' ')} and can no longer "
                "be changed; create a new pool instead",
            )
        try:
            if changes:
                pool.configure(**changes)
            if paused is True:
                pool.pause()
            elif paused is False:
                pool.resume()
        except (ValueError, TypeError) as exc:
            raise ApiError(422, "invalid_field", str(exc)) from None
        except RuntimeError as exc:
            raise ApiError(
                409, "pool_shut_down", f"pool {show(pool.name)} is shutting down: {exc}"
            ) from None
        return JSONResponse(pool_json(pool.stats(), pool.kind))

    async def delete_pool(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            query = parse_query(request.query_params, DELETE_QUERY)
        except FieldError as exc:
            raise _invalid(exc) from None
        kind = self._pool(name).kind
        try:
            final = await self.blocking.run(
                f"the removal of pool {show(name)}",
                self.manager.remove_pool,
                name,
                wait=True,
                cancel_futures=query.get("cancel_pending", False),
            )
        except KeyError:  # removed by a concurrent request
            raise ApiError(
                404, "pool_not_found", f"no pool named {show(name)}; it was removed already"
            ) from None
        return JSONResponse(pool_json(final, kind))

    # -- tasks ----------------------------------------------------------------------

    async def submit_task(self, request: Request) -> Response:
        self._refuse_while_stopping()
        pool = self._pool(request.path_params["name"])
        if isinstance(pool, PoolFamily):
            raise ApiError(
                409,
                "pool_is_family",
                f"pool {show(pool.name)} is a family of executors created by the program's "
                "code and runs nothing itself; submit to a pool made with POST /api/pools",
            )
        body = await self._body(request, TASK_SUBMIT)
        task_type = _task_type(body["task"])
        args: list[Any] = body.get("args", [])
        kwargs: dict[str, Any] = body.get("kwargs", {})
        try:
            bind_task_arguments(task_type, args, kwargs)
        except FieldError as exc:
            raise ApiError(422, "invalid_arguments", exc.message) from None
        try:
            if pool.rejection_policy == "caller_runs":
                # A full queue runs the task in the caller: never on the event loop.
                future = await self.blocking.run(
                    f"the submission to pool {show(pool.name)}",
                    pool.submit,
                    task_type.fn,
                    *args,
                    **kwargs,
                )
            else:
                # Short and lock-bound; a thread hop would cost fifty times the submit.
                # Nothing awaits between the check and the submit, so a PATCH of the
                # policy (handled on this same loop) cannot slip in between.
                future = pool.submit(task_type.fn, *args, **kwargs)
        except RejectedError as exc:
            raise ApiError(
                503,
                exc.reason,
                f"pool {show(pool.name)} rejected the task ({exc.reason}): {exc}; retry later",
                headers=_RETRY_AFTER,
            ) from None
        except RuntimeError as exc:
            raise ApiError(503, "shutdown", str(exc), headers=_RETRY_AFTER) from None
        if pool.rejection_policy in _DROPPING_POLICIES and future.cancelled():
            # A full queue under "discard" (or "discard_oldest" with nothing older to
            # drop) hands back a future that is already cancelled: the task never ran.
            raise ApiError(
                503,
                "queue_full",
                f"pool {show(pool.name)} queue is full and its policy dropped the task; "
                "retry later",
                headers=_RETRY_AFTER,
            )
        location = _api_url(request, "tasks", future.task_id)
        return JSONResponse(
            {"id": future.task_id, "pool": pool.name, "task": task_type.name},
            status_code=202,
            headers={"Location": location},
        )

    async def list_tasks(self, request: Request) -> Response:
        try:
            query = parse_task_query(request.query_params)
        except FieldError as exc:
            raise _invalid(exc) from None
        found = self.manager.tasks(
            pool=query.pool,
            state=query.state,
            name=query.name,
            offset=query.offset,
            limit=query.per_page,
        )
        items = [task_json_text(info) for info in found.items]
        page = dumps(pagination(query.page, query.per_page, found.total))
        return _json_text(f'{{"data":[{",".join(items)}],"pagination":{page}}}')

    def _task_not_found(self, task_id: str) -> ApiError:
        return ApiError(
            404,
            "task_not_found",
            f"no task with id {show(task_id)}; it never existed or left the history",
        )

    async def get_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            return _json_text(task_json_text(self.manager.get_task(task_id)))
        except KeyError:
            raise self._task_not_found(task_id) from None

    async def task_stack(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            stack = self.manager.task_stack(task_id)
        except KeyError:
            raise self._task_not_found(task_id) from None
        except TaskNotRunningError as exc:
            raise ApiError(409, "task_not_running", str(exc)) from None
        return JSONResponse(stack_json(stack))

    async def cancel_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            info = self.manager.get_task(task_id)
            result = self.manager.get_pool(info.pool).cancel(task_id)
        except KeyError:
            raise self._task_not_found(task_id) from None
        return JSONResponse({"result": result})
