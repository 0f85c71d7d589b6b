"""Errors of the cluster client, built from the API server's `Status` body.

A controller decides what to do next by the kind of failure, not by an HTTP code: a conflict
means "read again and retry", not-found on delete means "already done", an expired watch
means "list again", invalid means "tell the user, do not retry". So every failed request
becomes one exception class that says which of these it is, and keeps the whole Status body
(reason, message, details, causes) for the rest. The class is picked by the Status `reason`
where the reason is more precise than the code (409 is either AlreadyExists or Conflict; a 500
may be a ServerTimeout), and by the code otherwise, so a proxy's non-Status reply still lands
in the right place.

Failures that never reached the server (refused connection, TLS, a timeout on our side) are
`TransportError`: nothing was decided there, so the request may be retried as it was.

The underlying error of the HTTP layer (kubernetes_asyncio's `ApiException`, or an aiohttp
error) is chained as `__cause__`, never lost and never part of the public contract.

    KubeError
    ├── TransportError                  no answer from the API server
    │   └── RequestTimeout              our own per-request deadline passed
    └── ApiError                        the server answered with a failure Status
        ├── BadRequest                  400 (malformed request, create with resourceVersion,
        │                                    unsupported field selector)
        ├── Unauthorized                401
        ├── Forbidden                   403
        ├── NotFound                    404
        ├── MethodNotSupported          405
        ├── AlreadyExists               409, reason AlreadyExists
        ├── Conflict                    409, any other reason (stale resourceVersion,
        │                                    precondition, server-side apply field conflict)
        ├── Gone                        410 (a watch or continue token that expired)
        ├── UnsupportedMediaType        415 (e.g. a strategic merge patch on a custom resource)
        ├── Invalid                     422, with `causes` naming the fields
        ├── TooManyRequests             429, with `retry_after`
        └── ServerError                 5xx
            └── ServerTimeout           reason ServerTimeout or Timeout, or 504
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, cast

from kaito.kube._types import RawStatus, RawStatusDetails


class KubeError(Exception):
    """Base of every error raised by `kaito.kube`'s client."""


class TransportError(KubeError):
    """The request did not get an answer: connection refused or reset, TLS failure, timeout."""


class RequestTimeout(TransportError):
    """The client's deadline for one request passed before the server answered."""


class Cause(NamedTuple):
    """One reason a request was rejected, usually one invalid field of the object."""

    field: str
    reason: str
    message: str


class ApiError(KubeError):
    """The API server rejected a request; the Status body it sent is kept in `status`."""

    default_code: ClassVar[int] = 0

    def __init__(
        self,
        status: RawStatus,
        *,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status: RawStatus = status
        self.code: int = code if code is not None else int(status.get("code") or 0)
        self.reason: str = str(status.get("reason") or "")
        self.message: str = str(status.get("message") or "")
        self.details: RawStatusDetails = status.get("details") or {}
        if retry_after is None and "retryAfterSeconds" in self.details:
            retry_after = float(self.details["retryAfterSeconds"])
        self.retry_after: float | None = retry_after
        text = f"({self.code}) {self.reason or type(self).__name__}"
        super().__init__(f"{text}: {self.message}" if self.message else text)

    @property
    def causes(self) -> list[Cause]:
        """`details.causes` of the Status as (field, reason, message) tuples."""
        return [
            Cause(
                field=str(c.get("field", "")),
                reason=str(c.get("reason", "")),
                message=str(c.get("message", "")),
            )
            for c in self.details.get("causes") or []
        ]


class BadRequest(ApiError):
    default_code = 400


class Unauthorized(ApiError):
    default_code = 401


class Forbidden(ApiError):
    default_code = 403


class NotFound(ApiError):
    default_code = 404


class MethodNotSupported(ApiError):
    default_code = 405


class AlreadyExists(ApiError):
    default_code = 409


class Conflict(ApiError):
    default_code = 409


class Gone(ApiError):
    default_code = 410


class UnsupportedMediaType(ApiError):
    default_code = 415


class Invalid(ApiError):
    """The object failed validation; `causes` lists the offending fields."""

    default_code = 422


class TooManyRequests(ApiError):
    """The server is throttling; wait `retry_after` seconds (when it said) and retry."""

    default_code = 429


class ServerError(ApiError):
    default_code = 500


class ServerTimeout(ServerError):
    default_code = 504


_BY_CODE: dict[int, type[ApiError]] = {
    cls.default_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotSupported,
        Conflict,
        Gone,
        UnsupportedMediaType,
        Invalid,
        TooManyRequests,
    )
}

_BY_REASON: dict[str, type[ApiError]] = {
    "AlreadyExists": AlreadyExists,
    "ServerTimeout": ServerTimeout,
    "Timeout": ServerTimeout,
    "Expired": Gone,
}


def _error_class(code: int, reason: str) -> type[ApiError]:
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    if code == 504:
        return ServerTimeout
    if code >= 500:
        return ServerError
    return _BY_CODE.get(code, ApiError)


def _parse_retry_after(value: str | None) -> float | None:
    # Retry-After may also be an HTTP date; the API server only ever sends seconds.
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _as_status(code: int, body: bytes | str | Mapping[str, Any] | None) -> RawStatus:
    """The Status in a response body, or one made up from the code when there is none."""
    parsed: Any = body
    if isinstance(body, bytes | str):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, Mapping) or parsed.get("kind") != "Status":
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": code,
                "message": text.strip(),
            }
    if isinstance(parsed, Mapping):
        return cast(RawStatus, dict(parsed))
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}


def error_from_status(
    code: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    """The `ApiError` subclass for one failed response (HTTP code, body, headers).

    Also used for ERROR frames of a watch stream, whose object is a Status without a
    separate HTTP code.
    """
    status = _as_status(code, body)
    http_code = code or int(status.get("code") or 0)
    status_code = int(status.get("code") or http_code)
    cls = _error_class(status_code, str(status.get("reason") or ""))
    retry_after = _parse_retry_after((headers or {}).get("Retry-After"))
    return cls(status, code=status_code, retry_after=retry_after)
