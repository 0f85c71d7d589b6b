"""Result and option types, the public facade, and the protocol shapes."""

from __future__ import annotations

import inspect

import pytest

import kaito.kube
from kaito.kube import (
    Client,
    DeleteResult,
    KubeClient,
    ObjectList,
    Preconditions,
    Reader,
    StatusWriter,
    Watcher,
    WatchEvent,
    Writer,
    selector_string,
)

pytestmark = pytest.mark.timeout(10)

EXPECTED_EXPORTS = {
    # kinds (re-exported from _kinds)
    "ALL_VERBS",
    "BUILTIN_KINDS",
    "CLUSTER_ROLE",
    "CLUSTER_ROLE_BINDING",
    "CONFIG_MAP",
    "CONTROLLER_REVISION",
    "CUSTOM_RESOURCE_DEFINITION",
    "DEPLOYMENT",
    "EVENT",
    "EVENT_V1",
    "JOB",
    "LEASE",
    "NAMESPACE",
    "NODE",
    "NODE_CLAIM",
    "PERSISTENT_VOLUME_CLAIM",
    "POD",
    "REPLICA_SET",
    "ROLE",
    "ROLE_BINDING",
    "SECRET",
    "SERVICE",
    "SERVICE_ACCOUNT",
    "STATEFUL_SET",
    "WORKSPACE",
    "KindTable",
    "ResourceKind",
    "builtin_table",
    # protocols and values
    "Client",
    "Reader",
    "Writer",
    "StatusWriter",
    "Watcher",
    "PatchBody",
    "PatchType",
    "PropagationPolicy",
    "Preconditions",
    "DeleteResult",
    "ObjectList",
    "RawObject",
    "RawStatus",
    "RawStatusCause",
    "RawStatusDetails",
    "Selector",
    "WatchEvent",
    "WatchEventType",
    # implementation
    "DEFAULT_TIMEOUT",
    "KubeClient",
    "RequestCounter",
    "selector_string",
    # errors
    "KubeError",
    "ConfigError",
    "TransportError",
    "RequestTimeout",
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotSupported",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "UnsupportedMediaType",
    "Invalid",
    "TooManyRequests",
    "ServerError",
    "ServerTimeout",
    "Cause",
    "error_from_status",
}


def test_exports_are_exactly_the_intended_names() -> None:
    assert set(kaito.kube.__all__) == EXPECTED_EXPORTS
    assert len(kaito.kube.__all__) == len(EXPECTED_EXPORTS)
    for name in kaito.kube.__all__:
        assert getattr(kaito.kube, name) is not None


def _methods(protocol: type) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def test_protocols_are_small_and_segregated() -> None:
    assert _methods(Reader) == {"get", "list"}
    assert _methods(Writer) == {"create", "update", "patch", "delete"}
    assert _methods(StatusWriter) == {"update_status", "patch_status"}
    assert _methods(Watcher) == {"watch"}
    assert issubclass(Client, Reader)
    assert issubclass(Client, Writer)
    assert issubclass(Client, StatusWriter)
    assert issubclass(Client, Watcher)


def test_protocol_signatures_match_kube_client() -> None:
    # Every protocol parameter exists on KubeClient with the same kind and default, so code
    # written against the protocol runs unchanged on the implementation.
    for protocol in (Reader, Writer, StatusWriter, Watcher):
        for name in _methods(protocol):
            wanted = inspect.signature(getattr(protocol, name)).parameters
            actual = inspect.signature(getattr(KubeClient, name)).parameters
            for pname, param in wanted.items():
                assert pname in actual, f"{name}: missing {pname}"
                assert actual[pname].kind == param.kind, f"{name}.{pname}"
                assert actual[pname].default == param.default, f"{name}.{pname}"


class OnlyReads:
    """A reader that is not a KubeClient: what a unit test might hand to read-only code."""

    async def get(self, kind: object, name: str, *, namespace: str | None = None) -> dict:
        return {"metadata": {"name": name}}

    async def list(self, kind: object, **_: object) -> ObjectList:
        return ObjectList(items=[], resource_version="1")


def test_runtime_checks_tell_capabilities_apart() -> None:
    assert isinstance(OnlyReads(), Reader)
    assert not isinstance(OnlyReads(), Writer)
    assert not isinstance(OnlyReads(), Client)


def test_object_list_from_wire() -> None:
    page = ObjectList.from_wire(
        {
            "kind": "PodList",
            "metadata": {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 3},
            "items": [{"metadata": {"name": "a"}}],
        }
    )
    assert page.items == [{"metadata": {"name": "a"}}]
    assert page.resource_version == "42"
    assert page.continue_token == "abc"
    assert page.remaining_item_count == 3
    last = ObjectList.from_wire({"metadata": {"resourceVersion": "7", "continue": ""}})
    assert last.items == []
    assert last.continue_token is None
    assert last.remaining_item_count is None


def test_preconditions_wire_form() -> None:
    assert Preconditions().to_wire() == {}
    assert Preconditions(uid="u", resource_version="5").to_wire() == {
        "uid": "u",
        "resourceVersion": "5",
    }


def test_selector_string() -> None:
    assert selector_string("app in (a,b),!legacy") == "app in (a,b),!legacy"
    assert selector_string({"app": "x", "tier": "web"}) == "app=x,tier=web"
    assert selector_string({}) == ""


def test_delete_result_and_watch_event_accessors() -> None:
    assert DeleteResult(gone=False).terminating
    assert not DeleteResult(gone=True).terminating
    event = WatchEvent(type="BOOKMARK", object={"metadata": {"resourceVersion": "9"}})
    assert event.resource_version == "9"
    assert WatchEvent(type="ADDED", object={}).resource_version == ""
