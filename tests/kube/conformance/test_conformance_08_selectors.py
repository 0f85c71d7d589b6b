"""8. Listing: the label-selector grammar, field selectors (and an error for an unsupported
field), and paging with limit/continue."""

from __future__ import annotations

import pytest

from kaito.kube import CONFIG_MAP, BadRequest, KubeClient, Selector

from .conftest import TEST_LABEL, Backend

pytestmark = pytest.mark.timeout(30)

LABELS = {
    "a": {"app": "web", "tier": "front"},
    "b": {"app": "web", "tier": "back"},
    "c": {"app": "db"},
    "d": {},
}


@pytest.fixture
async def labelled(backend: Backend, client: KubeClient, ns: str) -> None:
    for name, labels in LABELS.items():
        await client.create(
            CONFIG_MAP,
            {"metadata": {"name": name, "namespace": ns, "labels": {**labels, **backend.label()}}},
        )


async def names(client: KubeClient, ns: str, selector: Selector) -> list[str]:
    # Every selector here also requires the test's own label, which excludes objects a real
    # cluster puts into new namespaces (kube-root-ca.crt).
    base = f"{TEST_LABEL}={ns}"
    text = (
        selector if isinstance(selector, str) else ",".join(f"{k}={v}" for k, v in selector.items())
    )
    page = await client.list(
        CONFIG_MAP, namespace=ns, label_selector=f"{text},{base}" if text else base
    )
    return sorted(o["metadata"]["name"] for o in page.items)


@pytest.mark.usefixtures("labelled")
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ["a", "b", "c", "d"]),
        ("app=web", ["a", "b"]),
        ("app==web", ["a", "b"]),
        ("app!=web", ["c", "d"]),
        ("tier in (front,back)", ["a", "b"]),
        ("tier in (front)", ["a"]),
        ("tier notin (front)", ["b", "c", "d"]),
        ("app in (web,db),tier notin (back)", ["a", "c"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("app=web,tier=back", ["b"]),
        ("app=nothing", []),
        ({"app": "db"}, ["c"]),
    ],
)
async def test_label_selector_grammar(
    client: KubeClient, ns: str, selector: Selector, expected: list[str]
) -> None:
    assert await names(client, ns, selector) == expected


@pytest.mark.parametrize("bad", ["app=(web", "app in web", "=web", "app!!=web"])
async def test_malformed_label_selector_is_a_bad_request(
    client: KubeClient, ns: str, bad: str
) -> None:
    with pytest.raises(BadRequest):
        await client.list(CONFIG_MAP, namespace=ns, label_selector=bad)


@pytest.mark.usefixtures("labelled")
async def test_field_selectors(backend: Backend, client: KubeClient, ns: str) -> None:
    mine = backend.label()
    by_name = await client.list(
        CONFIG_MAP, namespace=ns, field_selector="metadata.name=b", label_selector=mine
    )
    assert [o["metadata"]["name"] for o in by_name.items] == ["b"]
    not_b = await client.list(
        CONFIG_MAP, namespace=ns, field_selector={"metadata.name": "a"}, label_selector=mine
    )
    assert [o["metadata"]["name"] for o in not_b.items] == ["a"]
    others = await client.list(
        CONFIG_MAP, namespace=ns, field_selector="metadata.name!=a", label_selector=mine
    )
    assert sorted(o["metadata"]["name"] for o in others.items) == ["b", "c", "d"]
    across = await client.list(
        CONFIG_MAP, field_selector=f"metadata.namespace={ns}", label_selector=mine
    )
    assert sorted(o["metadata"]["name"] for o in across.items) == ["a", "b", "c", "d"]
    elsewhere = await client.list(
        CONFIG_MAP, field_selector="metadata.namespace=elsewhere", label_selector=mine
    )
    assert elsewhere.items == []


async def test_unsupported_field_selector_is_a_bad_request(client: KubeClient, ns: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await client.list(CONFIG_MAP, namespace=ns, field_selector="data.key=value")
    assert "data.key" in caught.value.message


@pytest.mark.usefixtures("labelled")
async def test_limit_and_continue(backend: Backend, client: KubeClient, ns: str) -> None:
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        page = await client.list(
            CONFIG_MAP, namespace=ns, label_selector=backend.label(), limit=3, continue_token=token
        )
        pages += 1
        assert len(page.items) <= 3
        seen.extend(o["metadata"]["name"] for o in page.items)
        token = page.continue_token
        if token is None:
            break
        assert pages < 10, "paging does not end"
    assert pages == 2
    # Pages come in key order, without repeats or gaps.
    assert seen == ["a", "b", "c", "d"]


async def test_continue_sees_the_snapshot_of_the_first_page(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    for name in ("p1", "p2", "p3"):
        await client.create(
            CONFIG_MAP, {"metadata": {"name": name, "namespace": ns, "labels": backend.label()}}
        )
    first = await client.list(CONFIG_MAP, namespace=ns, label_selector=backend.label(), limit=1)
    assert [o["metadata"]["name"] for o in first.items] == ["p1"]
    assert first.continue_token
    # Written after the first page: a consistent list does not show it.
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "p4", "namespace": ns, "labels": backend.label()}}
    )
    rest = await client.list(
        CONFIG_MAP,
        namespace=ns,
        label_selector=backend.label(),
        continue_token=first.continue_token,
    )
    assert [o["metadata"]["name"] for o in rest.items] == ["p2", "p3"]
    assert rest.resource_version == first.resource_version
