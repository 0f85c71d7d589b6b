"""Object metadata and the model base shared by every kaito resource.

Objects travel between the API server, YAML files and Python code, and the rule that keeps
that honest is the round trip: reading a document and writing it back gives the same document.
Three choices follow from it:

- Validation is strict (no "1" -> 1 coercion), so what was read is what gets written.
- Dumps leave out everything that was not set, so no defaults or nulls appear out of nowhere.
- Timestamps stay the RFC 3339 strings the API server wrote; a `datetime` would re-render them
  (fractions, offsets) differently. `parse_timestamp` / `format_timestamp` convert on demand.

`ObjectMeta` types the fields kaito reads and keeps any other server field (managedFields,
selfLink, ...) untouched as extra data, since metadata belongs to the API server, not to kaito.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kaito.api._checks import check_rfc3339


def _valid_timestamp(value: str) -> str:
    problem = check_rfc3339(value)
    if problem:
        raise ValueError(problem)
    return value


Timestamp = Annotated[str, AfterValidator(_valid_timestamp)]
"""An RFC 3339 timestamp kept as the exact string it was read as."""


def format_timestamp(moment: datetime) -> str:
    """Render a time the way the API server does: UTC, whole seconds, a trailing `Z`."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware `datetime`."""
    problem = check_rfc3339(value)
    if problem:
        raise ValueError(problem)
    return datetime.fromisoformat(value.upper())


class KaitoModel(BaseModel):
    """Base of every spec block: camelCase on the wire, strict types, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        strict=True,
        validate_assignment=True,
    )


class OwnerReference(KaitoModel):
    """An owner of an object, for garbage collection."""

    api_version: str = Field(description="API version of the owner.")
    kind: str = Field(description="Kind of the owner.")
    name: str = Field(description="Name of the owner.")
    uid: str = Field(description="UID of the owner.")
    controller: bool | None = Field(default=None, description="True for the managing owner.")
    block_owner_deletion: bool | None = Field(
        default=None, description="Foreground deletion waits for this object."
    )


class ObjectMeta(KaitoModel):
    """Standard object metadata. Unlisted server fields are kept as extra data."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    deletion_grace_period_seconds: int | None = None
    finalizers: list[str] | None = None
    owner_references: list[OwnerReference] | None = None

    def extra_fields(self) -> dict[str, Any]:
        """Server fields kaito does not type (managedFields, selfLink, ...), as read."""
        return dict(self.__pydantic_extra__ or {})
