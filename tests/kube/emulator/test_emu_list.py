"""Lists: label and field selectors, paging with continue tokens, all-namespace lists."""

from __future__ import annotations

import pytest
from emu_support import CM, PODS, Http, configmap, pod
from hypothesis import given
from hypothesis import strategies as st

from kaito.kube.emulator import ApiError, Emulator
from kaito.kube.emulator._selectors import (
    parse_field_selector,
    parse_label_selector,
    supported_fields,
)

LABELS = {"app": "web", "tier": "front", "version": "3"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("missing notin (db)", True),
        ("app", True),
        ("!app", False),
        ("!missing", True),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("version>2", True),
        ("version<3", False),
        (" app = web , tier in ( front , back ) ", True),
        ("app.kubernetes.io/name", False),
    ],
)
def test_label_selector_grammar(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    "selector",
    [
        "app=",
        "=web",
        "app in web",
        "app in (",
        "app in ()",
        "a,",
        "app=web,,x",
        "-bad-=x",
        "app web",
        "x>y",
        "app=(x)",
    ],
)
def test_malformed_label_selectors_are_bad_requests(selector: str) -> None:
    if selector == "app=":
        assert parse_label_selector(selector).matches({"app": ""})
        return
    with pytest.raises(ApiError) as caught:
        parse_label_selector(selector)
    assert caught.value.code == 400


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y", "z"]), max_size=3),
    st.sampled_from(["a", "b", "c"]),
    st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3),
)
def test_in_and_notin_are_complements(labels: dict[str, str], key: str, values: list[str]) -> None:
    inside = parse_label_selector(f"{key} in ({','.join(values)})").matches(labels)
    outside = parse_label_selector(f"{key} notin ({','.join(values)})").matches(labels)
    assert inside != outside


def test_field_selectors() -> None:
    fields = supported_fields("", "pods")
    running = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    assert parse_field_selector("status.phase=Running", fields).matches(running)
    assert parse_field_selector("status.phase==Running,spec.nodeName=n1", fields).matches(running)
    assert not parse_field_selector("spec.nodeName!=n1", fields).matches(running)
    unscheduled = {"metadata": {"name": "q"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", fields).matches(unscheduled)
    assert parse_field_selector(r"metadata.name=a\,b", fields).matches(
        {"metadata": {"name": "a,b"}}
    )


def test_unsupported_field_label() -> None:
    with pytest.raises(ApiError) as caught:
        parse_field_selector("spec.nodeName=x", supported_fields("", "configmaps"))
    assert caught.value.code == 400
    assert caught.value.message == "field label not supported: spec.nodeName"


async def test_list_with_label_selector(http: Http) -> None:
    await http.post(CM, configmap("a", app="web"))
    await http.post(CM, configmap("b", app="db"))
    reply = await http.get(CM, params={"labelSelector": "app in (web)"})
    assert reply.body["kind"] == "ConfigMapList"
    assert [o["metadata"]["name"] for o in reply.body["items"]] == ["a"]
    bad = await http.get(CM, params={"labelSelector": "app in web"})
    assert bad.status == 400
    assert bad.body["reason"] == "BadRequest"


async def test_list_with_field_selector(emu: Emulator, http: Http) -> None:
    emu.store.seed([{**pod("p1"), "spec": {**pod("p1")["spec"], "nodeName": "n1"}}, pod("p2")])
    emu.store.patch("pods", "default", "p1", {"status": {"phase": "Running"}}, subresource="status")
    by_node = await http.get(PODS, params={"fieldSelector": "spec.nodeName=n1"})
    assert [o["metadata"]["name"] for o in by_node.body["items"]] == ["p1"]
    pending = await http.get(PODS, params={"fieldSelector": "status.phase!=Running"})
    assert [o["metadata"]["name"] for o in pending.body["items"]] == ["p2"]
    by_name = await http.get(PODS, params={"fieldSelector": "metadata.name=p2"})
    assert [o["metadata"]["name"] for o in by_name.body["items"]] == ["p2"]
    unsupported = await http.get(CM, params={"fieldSelector": "status.phase=x"})
    assert unsupported.status == 400
    assert unsupported.body["message"] == "field label not supported: status.phase"


async def test_list_across_all_namespaces(emu: Emulator, http: Http) -> None:
    emu.store.seed([configmap("a", "alpha"), configmap("b", "beta"), configmap("c")])
    reply = await http.get("/api/v1/configmaps")
    found = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in reply.body["items"]]
    assert found == [("alpha", "a"), ("beta", "b"), ("default", "c")]
    ns_pinned = await http.get(
        "/api/v1/configmaps", params={"fieldSelector": "metadata.namespace=beta"}
    )
    assert [o["metadata"]["name"] for o in ns_pinned.body["items"]] == ["b"]


async def test_paging_with_limit_and_continue(emu: Emulator, http: Http) -> None:
    emu.store.seed([configmap(f"c{i}") for i in range(5)])
    seen: list[str] = []
    params = {"limit": "2"}
    pages = 0
    while True:
        reply = await http.get(CM, params=params)
        pages += 1
        seen += [o["metadata"]["name"] for o in reply.body["items"]]
        token = reply.body["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in reply.body["metadata"]
            break
        if pages == 1:
            assert reply.body["metadata"]["remainingItemCount"] == 3
        params = {"limit": "2", "continue": token}
    assert seen == [f"c{i}" for i in range(5)]
    assert pages == 3


async def test_continued_list_is_a_consistent_snapshot(emu: Emulator, http: Http) -> None:
    emu.store.seed([configmap(f"c{i}") for i in range(3)])
    first = await http.get(CM, params={"limit": "1"})
    token = first.body["metadata"]["continue"]
    emu.store.create("configmaps", configmap("c9"))
    emu.store.delete("configmaps", "default", "c2")
    emu.store.patch("configmaps", "default", "c1", {"data": {"k": "changed"}})
    rest = await http.get(CM, params={"continue": token})
    assert [o["metadata"]["name"] for o in rest.body["items"]] == ["c1", "c2"]
    assert rest.body["items"][0]["data"] == {"k": "v"}
    assert rest.body["metadata"]["resourceVersion"] == first.body["metadata"]["resourceVersion"]


async def test_expired_continue_token_is_gone(emu: Emulator, http: Http) -> None:
    emu.store.seed([configmap(f"c{i}") for i in range(3)])
    first = await http.get(CM, params={"limit": "1"})
    emu.store.history_limit = 2
    for i in range(3):
        emu.store.patch("configmaps", "default", "c0", {"data": {"i": str(i)}})
    reply = await http.get(CM, params={"continue": first.body["metadata"]["continue"]})
    assert reply.status == 410
    assert reply.body["reason"] == "Expired"
    assert "continue" in reply.body["message"]


async def test_malformed_continue_token_is_bad_request(http: Http) -> None:
    reply = await http.get(CM, params={"continue": "not-a-token"})
    assert reply.status == 400
