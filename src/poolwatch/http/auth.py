"""Who may change things: the bearer token, read-only mode and the loopback rule.

Reads (GET) are always open. Mutations (POST, PATCH, DELETE) are decided in this order:

1. read-only mode: 403 ``read_only``, whatever the token says;
2. a token is configured: no or malformed ``Authorization`` header -> 401
   ``missing_token``; a wrong token -> 401 ``invalid_token`` (both with
   ``WWW-Authenticate: Bearer``, as RFC 6750 has it); the right token -> allowed;
3. no token: allowed only when the server is known to listen on a loopback address
   (``bind_host``); otherwise 403 ``mutations_disabled``. An app mounted inside another
   service with neither a token nor ``bind_host`` refuses mutations: it cannot know who
   can reach it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from poolwatch.http.errors import ApiError

__all__ = ["AccessPolicy", "audit", "is_loopback"]

audit_logger = logging.getLogger("poolwatch.audit")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The mutation rules of one app (see the module docstring)."""

    token: str | None = None
    read_only: bool = False
    bind_host: str | None = None
    loopback: bool = field(init=False)

    def __post_init__(self) -> None:
        # Decided once: parsing the address on every mutation shows up in profiles.
        object.__setattr__(self, "loopback", is_loopback(self.bind_host))

    @property
    def auth_required(self) -> bool:
        return self.token is not None

    @property
    def mutations_allowed(self) -> bool:
        """Whether a mutation can succeed at all (given the right token, if one is set)."""
        if self.read_only:
            return False
        return self.token is not None or self.loopback

    def authorize(self, request: Request) -> bool:
        """Allow a mutating request or raise ApiError; returns whether it carried a valid token."""
        if self.read_only:
            raise ApiError(
                403,
                "read_only",
                "this server is read-only: changes are disabled (restart it without --read-only "
                "to allow them)",
            )
        if self.token is not None:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            challenge = 'Bearer realm="poolwatch"'
            if scheme.lower() != "bearer" or not given.strip():
                raise ApiError(
                    401,
                    "missing_token",
                    "this request changes state and needs an 'Authorization: Bearer <token>' "
                    "header with the server's API token",
                    headers={"WWW-Authenticate": challenge},
                )
            if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                raise ApiError(
                    401,
                    "invalid_token",
                    "the bearer token is not this server's API token; check POOLWATCH_API_TOKEN "
                    "or the [server] token setting",
                    headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
                )
            return True
        if self.loopback:
            return False
        raise ApiError(
            403,
            "mutations_disabled",
            "changes need an API token on a server that is not bound to loopback only; set "
            "POOLWATCH_API_TOKEN (or [server] token) and send 'Authorization: Bearer <token>'",
        )


def client_address(request: Request) -> str:
    client = request.client
    if client is None:
        return "unknown"
    return f"{client.host}:{client.port}"


def audit(
    request: Request,
    *,
    action: str,
    target: str | None,
    status: int,
    authenticated: bool,
    result: str,
    **details: Any,
) -> None:
    """Log one control action as a JSON line on the ``poolwatch.audit`` logger."""
    if not audit_logger.isEnabledFor(logging.INFO):
        return
    record = {
        "event": "control",
        "action": action,
        "target": target,
        "client": client_address(request),
        "authenticated": authenticated,
        "status": status,
        "result": result,
        **details,
    }
    audit_logger.info(json.dumps(record, default=str, sort_keys=False))
