"""The error tree: which class a Status body becomes, and what the error carries."""

from __future__ import annotations

import json

import pytest

from kaito.kube import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Cause,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    MethodNotSupported,
    NotFound,
    RequestTimeout,
    ServerError,
    ServerTimeout,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
    error_from_status,
)

pytestmark = pytest.mark.timeout(10)


def status(code: int, reason: str, message: str = "m", **details: object) -> dict[str, object]:
    body: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if details:
        body["details"] = details
    return body


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", BadRequest),
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (405, "MethodNotAllowed", MethodNotSupported),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Expired", Gone),
        (410, "Gone", Gone),
        (415, "UnsupportedMediaType", UnsupportedMediaType),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TooManyRequests),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (500, "ServerTimeout", ServerTimeout),
        (504, "Timeout", ServerTimeout),
        (418, "Teapot", ApiError),
    ],
)
def test_status_maps_to_class(code: int, reason: str, cls: type[ApiError]) -> None:
    err = error_from_status(code, json.dumps(status(code, reason, "it failed")))
    assert type(err) is cls
    assert err.code == code
    assert err.reason == reason
    assert err.message == "it failed"
    assert err.status["kind"] == "Status"
    assert str(err) == f"({code}) {reason}: it failed"


def test_tree_shape() -> None:
    for cls in (BadRequest, NotFound, Conflict, AlreadyExists, Gone, Invalid, ServerError):
        assert issubclass(cls, ApiError)
        assert issubclass(cls, KubeError)
    assert issubclass(ServerTimeout, ServerError)
    assert issubclass(RequestTimeout, TransportError)
    assert not issubclass(TransportError, ApiError)
    # AlreadyExists and Conflict are both 409 but mean different things to a controller.
    assert not issubclass(AlreadyExists, Conflict)
    assert not issubclass(Conflict, AlreadyExists)


def test_invalid_carries_causes_in_order() -> None:
    body = status(
        422,
        "Invalid",
        'Workspace.kaito.sh "w" is invalid',
        name="w",
        group="kaito.sh",
        kind="Workspace",
        causes=[
            {"reason": "FieldValueRequired", "message": "Required value", "field": "resource"},
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 0",
                "field": "resource.count",
            },
        ],
    )
    err = error_from_status(422, json.dumps(body).encode())
    assert isinstance(err, Invalid)
    assert err.causes == [
        Cause("resource", "FieldValueRequired", "Required value"),
        Cause("resource.count", "FieldValueInvalid", "Invalid value: 0"),
    ]
    assert err.details["name"] == "w"
    assert err.details["kind"] == "Workspace"


def test_retry_after_from_header_wins_over_details() -> None:
    body = status(429, "TooManyRequests", retryAfterSeconds=7)
    from_details = error_from_status(429, body)
    assert isinstance(from_details, TooManyRequests)
    assert from_details.retry_after == 7.0
    from_header = error_from_status(429, body, {"Retry-After": "3"})
    assert from_header.retry_after == 3.0
    unparsable = error_from_status(429, status(429, "TooManyRequests"), {"Retry-After": "soon"})
    assert unparsable.retry_after is None


def test_body_that_is_not_a_status_still_maps_by_code() -> None:
    err = error_from_status(503, b"upstream connect error\n")
    assert type(err) is ServerError
    assert err.code == 503
    assert err.message == "upstream connect error"
    assert err.causes == []
    not_a_status = error_from_status(404, json.dumps({"kind": "Pod"}))
    assert isinstance(not_a_status, NotFound)
    empty = error_from_status(409, None)
    assert type(empty) is Conflict
    assert str(empty) == "(409) Conflict"


def test_watch_error_frame_uses_the_code_in_the_status() -> None:
    # ERROR frames of a watch arrive with HTTP 200; only the Status says what happened.
    err = error_from_status(0, status(410, "Expired", "too old resource version: 1 (5)"))
    assert isinstance(err, Gone)
    assert err.code == 410
    assert "too old" in err.message


def test_reason_beats_code_for_already_exists() -> None:
    # A 409 is AlreadyExists only when the server says so; the code alone means Conflict.
    assert type(error_from_status(409, status(409, "AlreadyExists"))) is AlreadyExists
    assert type(error_from_status(409, {"kind": "Status", "code": 409})) is Conflict
