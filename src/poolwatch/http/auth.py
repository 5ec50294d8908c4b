"""Who may change things: the bearer token, read-only mode and the loopback rule.

Reads (GET) are always open. Mutations (POST, PATCH, DELETE) are decided in this order:

1. read-only mode: 403 ``read_only``, whatever the token says;
2. a token is configured: no or malformed ``Authorization`` header -> 401
   ``missing_token``; a wrong token -> 401 ``invalid_token`` (both with
   ``WWW-Authenticate: Bearer``, as RFC 6750 has it); the right token -> allowed;
3. no token: allowed only when the server is known to listen on a loopback address
   (``bind_host``); otherwise 403 ``mutations_disabled``. An app mounted inside another
   service with neither a token nor ``bind_host`` refuses mutations: it cannot know who
   can reach it. Even on loopback, any web page the user opens can make the browser
   send requests there, so a token-less mutation must also come from this server's own
   pages:

   - the ``Host`` header must name loopback (``localhost``, ``127.0.0.0/8``, ``[::1]``,
     any port), else 403 ``untrusted_host``: a DNS-rebinding page reaches the server
     under its own host name;
   - an ``Origin`` header must name the same host and port as ``Host``, and
     ``Sec-Fetch-Site`` must not be ``cross-site`` or ``same-site``, else 403
     ``cross_site_request``.

   With a token these checks are not needed: browsers never attach a bearer token by
   themselves, so a cross-site page cannot forge an authorized request.

The messages name the settings the way whoever runs the app sets them (``SettingNames``:
the arguments of ``create_app``/``start_service``, or ``poolwatch serve``'s environment,
config file and options).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from poolwatch.http.errors import ApiError

__all__ = [
    "APP_ARGUMENTS",
    "RUN_SETTINGS",
    "SERVER_SETTINGS",
    "TOKEN_RULE",
    "AccessPolicy",
    "SettingNames",
    "audit",
    "audit_record",
    "is_loopback",
    "token_problem",
]

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


#: What a valid API token looks like, in words (RFC 6750's b64token).
TOKEN_RULE = (
    "an API token may only hold ASCII letters, digits and - . _ ~ + / (optionally ending "
    "in =), as RFC 6750 has it; generate one with "
    "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9\-._~+/=]")


def token_problem(token: str) -> str | None:
    """Why ``token`` could never match an ``Authorization`` header, or None if it can.

    Header values arrive trimmed and decoded as Latin-1, so surrounding spaces or
    non-ASCII text would make a token that no client can send. The token itself is
    never quoted in the answer: it is a secret.
    """
    if not token:
        return "is empty"
    if token != token.strip():
        return "starts or ends with whitespace"
    if _B64TOKEN.fullmatch(token):
        return None
    bad = next((c for c in token if not _TOKEN_CHAR.fullmatch(c)), None)
    if bad is None:
        return 'has "=" other than at its end'
    return f"contains {json.dumps(bad, ensure_ascii=False)}, which is not allowed"


def _split_host(authority: str) -> tuple[str, int | None] | None:
    """``("127.0.0.1", 8000)`` from ``127.0.0.1:8000``, ``("::1", None)`` from ``[::1]``."""
    if authority.startswith("["):
        host, sep, rest = authority[1:].partition("]")
        if not sep:
            return None
    else:
        host, sep, port = authority.partition(":")
        rest = sep + port
    if not host or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
        return None
    return host.lower(), int(rest[1:]) if rest else None


def _loopback_name(host: str) -> bool:
    """Whether ``host`` (from a Host header, without port) names this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class SettingNames:
    """How whoever runs an app sets its token and read-only mode, for the error messages
    that tell them: an app made in code and ``poolwatch serve`` are set up differently."""

    #: Where the API token is set, e.g. ``POOLWATCH_API_TOKEN``.
    token: str
    #: What made the app read-only and how to undo it.
    read_only: str


#: An app made in code: ``create_app(manager, ...)`` or ``start_service(...)``.
APP_ARGUMENTS = SettingNames(
    token="the token= argument of create_app() or start_service()",
    read_only="it was made with read_only=True; make it without to allow them",
)
#: ``poolwatch run``: its environment.
RUN_SETTINGS = SettingNames(
    token="poolwatch run's --token, POOLWATCH_API_TOKEN or [server] token in its config file",
    read_only="poolwatch run was started read-only (--read-only, POOLWATCH_READ_ONLY=1 or "
    "[server] read_only); start it without to allow them",
)
#: ``poolwatch serve``: the environment or the config file, and the command line.
SERVER_SETTINGS = SettingNames(
    token="POOLWATCH_API_TOKEN or [server] token in the config file",
    read_only="restart it without --read-only to allow them",
)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The mutation rules of one app (see the module docstring).

    ``names`` only words the errors: how this app's operator sets what they name.
    """

    token: str | None = None
    read_only: bool = False
    bind_host: str | None = None
    names: SettingNames = APP_ARGUMENTS
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
                f"this server is read-only: changes are disabled ({self.names.read_only})",
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
                    f"the bearer token is not this server's API token; check {self.names.token}",
                    headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
                )
            return True
        if not self.loopback:
            raise ApiError(403, "mutations_disabled", self._exposed_message())
        _check_same_origin(request, self.names)
        return False

    def _exposed_message(self) -> str:
        if self.bind_host is None:
            # Only create_app leaves it unset: mounted in a service that alone knows its address.
            return (
                "this app does not know which address its server listens on, so it accepts "
                "changes only with an API token: make it with create_app(manager, token=...) "
                "and send 'Authorization: Bearer <token>', or with create_app(manager, "
                "bind_host='127.0.0.1') if the server listens on loopback only"
            )
        return (
            f"changes need an API token on a server that listens on {self.bind_host}, not on "
            f"loopback only: set {self.names.token} and send 'Authorization: Bearer <token>'"
        )


def _check_same_origin(request: Request, names: SettingNames) -> None:
    """Refuse a token-less mutation that a web page of another site could have sent."""
    headers = request.headers
    host = headers.get("host")
    # No browser omits Host, so a request without one is no browser's doing.
    where = _split_host(host) if host is not None else None
    if host is not None and (where is None or not _loopback_name(where[0])):
        raise ApiError(
            403,
            "untrusted_host",
            f"this server has no API token, so it accepts changes only when addressed by a "
            f"loopback name (localhost, 127.0.0.1 or [::1]), not by Host {json.dumps(host)}; "
            f"open it as http://127.0.0.1:<port>/, or configure an API token ({names.token})",
        )
    fix = (
        "this server has no API token, so it accepts changes only from the same origin "
        "(its own console, or a client on this machine such as curl); call it from there, "
        f"or configure an API token ({names.token}) and send 'Authorization: Bearer <token>'"
    )
    site = headers.get("sec-fetch-site", "").lower()
    if site in ("cross-site", "same-site"):
        raise ApiError(
            403,
            "cross_site_request",
            f"refused a change sent by a web page of another site (Sec-Fetch-Site: {site}): " + fix,
        )
    origin = headers.get("origin")
    scheme = str(request.scope.get("scheme", "http"))
    if origin is not None and not _same_authority(origin, where, scheme):
        raise ApiError(
            403,
            "cross_site_request",
            f"refused a change sent by a web page of another origin (Origin "
            f"{json.dumps(origin[:200])}, Host {json.dumps(host)}): " + fix,
        )


def _same_authority(origin: str, host: tuple[str, int | None] | None, scheme: str) -> bool:
    """Whether the ``Origin`` header names the host and port of the ``Host`` header
    (of a request that came in over ``scheme``)."""
    if host is None:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.path or parts.query or parts.fragment or parts.username is not None:
        return False  # also "null", sent by sandboxed frames and cross-site redirects
    theirs = _split_host(parts.netloc)
    their_default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if theirs is None or their_default is None:
        return False
    our_port = host[1] or _DEFAULT_PORTS.get(scheme, 80)
    return theirs[0] == host[0] and (theirs[1] or their_default) == our_port


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
    audit_record(
        {
            "event": "control",
            "action": action,
            "target": target,
            "client": client_address(request),
            "authenticated": authenticated,
            "status": status,
            "result": result,
            **details,
        }
    )


def audit_record(record: dict[str, Any]) -> None:
    """Log one audit record (a JSON object) as a line on the ``poolwatch.audit`` logger."""
    audit_logger.info(json.dumps(record, default=str, sort_keys=False))
