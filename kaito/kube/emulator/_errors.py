"""API errors raised by the store and rendered by the server as `kind: Status` bodies.

Clients branch on three things of a failed call: the HTTP code, `reason`, and `details` (which
object, which fields). kube-apiserver builds them in a handful of fixed shapes, and this module
has one constructor per shape so that every error of the emulator looks like the real one:

- NotFound / AlreadyExists / Conflict / Forbidden: `details.kind` is the *resource* (plural),
  the message is `<resource>[.<group>] "<name>" ...`.
- Invalid (422): `details.kind` is the *Kind*, the message is `<Kind>[.<group>] "<name>" is
  invalid: <field errors>`, and every field error is a cause `{reason, message, field}`.
- BadRequest, MethodNotAllowed, UnsupportedMediaType, Expired (410): no details.

The store raises these; the HTTP layer only serialises them, so store-level tests see the same
errors as HTTP clients.
"""

from __future__ import annotations

from typing import Any

import attrs

# Reasons of field errors (metav1.CauseType values).
FIELD_INVALID = "FieldValueInvalid"
FIELD_REQUIRED = "FieldValueRequired"
FIELD_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_FORBIDDEN = "FieldValueForbidden"
FIELD_TOO_LONG = "FieldValueTooLong"
FIELD_TOO_MANY = "FieldValueTooMany"
FIELD_DUPLICATE = "FieldValueDuplicate"

_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def reason_for_code(code: int) -> str:
    """The `reason` kube-apiserver gives a status code when nothing more specific applies."""
    return _REASON_BY_CODE.get(code, "Unknown")


@attrs.frozen
class FieldError:
    """One invalid field: `field` is the dotted path, `detail` the human part of the message."""

    reason: str
    field: str
    detail: str = ""
    value: Any = None
    show_value: bool = False

    def message(self) -> str:
        if self.reason == FIELD_REQUIRED:
            head = "Required value"
        elif self.reason == FIELD_FORBIDDEN:
            head = "Forbidden"
        elif self.reason == FIELD_NOT_SUPPORTED:
            head = f"Unsupported value: {_render_value(self.value)}"
        elif self.reason == FIELD_TOO_LONG:
            head = "Too long"
        elif self.reason == FIELD_TOO_MANY:
            head = "Too many"
        elif self.reason == FIELD_DUPLICATE:
            head = f"Duplicate value: {_render_value(self.value)}"
        else:
            head = f"Invalid value: {_render_value(self.value)}"
        return f"{head}: {self.detail}" if self.detail else head

    def cause(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message()}" if self.field else self.message()


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return str(value)


class ApiError(Exception):
    """An error with a complete `kind: Status` body; `code` is the HTTP status."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    details.update({k: v for k, v in extra.items() if v})
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        _details(name, group, plural),
    )


def resource_not_found() -> ApiError:
    """A URL that names no resource the server knows."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


STALE_OBJECT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    subject = f'{_qualified(plural, group)} "{name}"' if name else _qualified(plural, group)
    return ApiError(
        403,
        "Forbidden",
        f"{subject} is forbidden: {why}",
        _details(name, group, plural),
    )


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    rendered = [str(e) for e in errors]
    joined = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{_qualified(kind, group)} "{name}" is invalid: {joined}',
        _details(name, group, kind, causes=[e.cause() for e in errors]),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(accepted: tuple[str, ...]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unprocessable(message: str) -> ApiError:
    """A patch that cannot be applied (a failed JSON-patch `test`, a missing path)."""
    return ApiError(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": message}]},
    )


def generic(code: int, message: str = "", reason: str = "") -> ApiError:
    """An error of any code, as injected by faults."""
    return ApiError(
        code,
        reason or reason_for_code(code),
        message or f"the server responded with status code {code} (injected fault)",
    )
