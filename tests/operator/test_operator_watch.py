"""Watches: which workspace an object wakes, and list+watch through expiry and failures.

The informers run against the emulator over HTTP. Relisting is provoked the way it happens in
production: a watch resumes from a resourceVersion that has fallen out of the server's (here
deliberately tiny) history and gets 410 Gone, or the connection drops.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from operator_support import owned_labels, pod, wait_until, workspace

from kaito.kube import (
    CONFIG_MAP,
    NODE,
    NODE_CLAIM,
    POD,
    WORKSPACE,
    KubeClient,
    RawObject,
    ResourceKind,
)
from kaito.kube.emulator import Emulator
from kaito.operator import CHILD_KINDS, CHILD_SELECTOR, Informer, OperatorMetrics, workspace_key

pytestmark = pytest.mark.timeout(20)


# -- mapping ---------------------------------------------------------------------------------


def test_a_workspace_maps_to_its_own_key() -> None:
    assert workspace_key(WORKSPACE, workspace("phi", "team-a")) == "team-a/phi"


def test_children_map_through_the_workspace_labels() -> None:
    labelled = pod("phi-0", "team-a", labels=owned_labels("phi", "team-a"))
    assert workspace_key(POD, labelled) == "team-a/phi"


def test_the_namespace_label_wins_over_the_objects_namespace() -> None:
    config = {"metadata": {"name": "c", "namespace": "other", "labels": owned_labels("w", "ns")}}
    assert workspace_key(CONFIG_MAP, config) == "ns/w"


def test_without_the_namespace_label_the_objects_namespace_is_used() -> None:
    obj = pod("phi-0", "team-a", labels={"kaito.sh/workspace": "phi"})
    assert workspace_key(POD, obj) == "team-a/phi"


def test_cluster_scoped_children_need_the_namespace_label() -> None:
    node = {"metadata": {"name": "n1", "labels": owned_labels("phi", "team-a")}}
    assert workspace_key(NODE, node) == "team-a/phi"
    bare = {"metadata": {"name": "n2", "labels": {"kaito.sh/workspace": "phi"}}}
    assert workspace_key(NODE_CLAIM, bare) is None


def test_unrelated_objects_map_to_nothing() -> None:
    assert workspace_key(POD, pod("web", labels={"app": "web"})) is None
    assert workspace_key(POD, {"metadata": {"name": "x"}}) is None


def test_the_watched_kinds_and_selector() -> None:
    names = {k.kind for k in CHILD_KINDS}
    assert names == {
        "NodeClaim",
        "Node",
        "StatefulSet",
        "Service",
        "Pod",
        "Job",
        "ConfigMap",
    }
    assert CHILD_SELECTOR == "kaito.sh/workspace"


# -- informers against the emulator ------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.keys: list[str] = []

    def __call__(self, kind: ResourceKind, event_type: str, obj: RawObject) -> None:
        self.events.append((kind.kind, event_type, obj["metadata"]["name"]))
        key = workspace_key(kind, obj)
        if key is not None:
            self.keys.append(key)

    def saw(self, event_type: str, name: str) -> bool:
        return any(t == event_type and n == name for _, t, n in self.events)


async def start(informer: Informer) -> asyncio.Task[None]:
    task = asyncio.create_task(informer.run())
    await asyncio.wait_for(informer.synced.wait(), 5)
    return task


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_event_on_a_labelled_pod_enqueues_its_workspace(
    emu: Emulator, client: KubeClient
) -> None:
    recorder = Recorder()
    informer = Informer(client, POD, recorder, label_selector=CHILD_SELECTOR, retry_base=0.05)
    task = await start(informer)
    try:
        emu.store.create("pods", pod("web-0", labels={"app": "web"}))
        emu.store.create("pods", pod("phi-0", labels=owned_labels("phi")))
        await wait_until(lambda: recorder.saw("ADDED", "phi-0"), what="the labelled pod")
        assert recorder.keys == ["default/phi"]
        assert not recorder.saw("ADDED", "web-0"), "the server filtered the unrelated pod"
        assert len(informer) == 1
    finally:
        await stop(task)


async def test_the_first_list_reports_existing_objects_and_marks_synced(
    emu: Emulator, client: KubeClient
) -> None:
    emu.store.seed([workspace("a"), workspace("b", "team")])
    recorder = Recorder()
    metrics = OperatorMetrics()
    informer = Informer(client, WORKSPACE, recorder, metrics=metrics, page_size=1)
    task = await start(informer)
    try:
        assert sorted(recorder.keys) == ["default/a", "team/b"]
        assert {o["metadata"]["name"] for o in informer.objects()} == {"a", "b"}
        assert all(o["kind"] == "Workspace" for o in informer.objects())
        assert metrics.sample("kaito_watch_lists_total", {"kind": "Workspace"}) == 1
    finally:
        await stop(task)


async def test_modified_and_deleted_events_update_the_cache(
    emu: Emulator, client: KubeClient
) -> None:
    recorder = Recorder()
    informer = Informer(client, CONFIG_MAP, recorder, label_selector=CHILD_SELECTOR)
    task = await start(informer)
    try:
        config = {"metadata": {"name": "c", "namespace": "default", "labels": owned_labels("w")}}
        emu.store.create("configmaps", config)
        await wait_until(lambda: len(informer) == 1)
        emu.store.patch("configmaps", "default", "c", {"data": {"k": "v"}})
        await wait_until(lambda: recorder.saw("MODIFIED", "c"))
        assert informer.objects()[0]["data"] == {"k": "v"}
        emu.store.delete("configmaps", "default", "c")
        await wait_until(lambda: recorder.saw("DELETED", "c"))
        assert len(informer) == 0
        assert recorder.keys == ["default/w"] * 3
    finally:
        await stop(task)


async def test_410_gone_relists_and_reports_what_changed_meanwhile(
    client: KubeClient, kubeconfig: Any
) -> None:
    async with Emulator(bookmark_interval=10) as small:
        small.store.history_limit = 5
        path = small.write_kubeconfig(kubeconfig.parent / "small-kubeconfig")
        async with await KubeClient.from_kubeconfig(path, request_timeout=5) as kube:
            recorder = Recorder()
            metrics = OperatorMetrics()
            # The first watch ends after one event; reconnecting is slow (as on a congested
            # network), and meanwhile more changes happen than the history keeps.
            small.faults.add(verb="watch", plural="pods", close_watch_after_events=1)
            small.faults.add(verb="watch", plural="pods", latency=1.0)
            informer = Informer(kube, POD, recorder, label_selector=CHILD_SELECTOR, metrics=metrics)
            task = await start(informer)
            try:
                small.store.create("pods", pod("a", labels=owned_labels("wa")))
                await wait_until(lambda: recorder.saw("ADDED", "a"))
                small.store.delete("pods", "default", "a")
                small.store.create("pods", pod("b", labels=owned_labels("wb")))
                for n in range(8):
                    small.store.create(
                        "configmaps", {"metadata": {"name": f"noise-{n}", "namespace": "default"}}
                    )
                await wait_until(lambda: informer.lists == 2, what="a relist after 410 Gone")
                await wait_until(
                    lambda: recorder.saw("DELETED", "a") and recorder.saw("ADDED", "b")
                )
                assert {o["metadata"]["name"] for o in informer.objects()} == {"b"}
                assert metrics.sample("kaito_watch_lists_total", {"kind": "Pod"}) == 2
                # And the new watch works.
                small.store.create("pods", pod("c", labels=owned_labels("wc")))
                await wait_until(lambda: recorder.saw("ADDED", "c"))
                assert "default/wc" in recorder.keys
            finally:
                await stop(task)


async def test_a_dropped_connection_relists_after_a_backoff(
    emu: Emulator, client: KubeClient
) -> None:
    recorder = Recorder()
    # Twice: the HTTP client may retry a request once by itself on a reused connection.
    dropped = emu.faults.add(verb="watch", plural="nodes", abort=True, times=2)
    informer = Informer(client, NODE, recorder, label_selector=CHILD_SELECTOR, retry_base=0.05)
    task = await start(informer)
    try:
        await wait_until(lambda: informer.lists >= 2, what="a relist after the dropped watch")
        await wait_until(lambda: dropped.exhausted)
        node = {"metadata": {"name": "n1", "labels": owned_labels("phi")}}
        emu.store.create("nodes", node)
        await wait_until(lambda: recorder.saw("ADDED", "n1"))
        assert recorder.keys == ["default/phi"]
    finally:
        await stop(task)


async def test_a_server_error_on_list_is_retried(emu: Emulator, client: KubeClient) -> None:
    emu.faults.add(verb="list", plural="services", code=500, times=2)
    informer = Informer(client, CONFIG_MAP, Recorder(), retry_base=0.02)
    services = Informer(
        client,
        next(k for k in CHILD_KINDS if k.kind == "Service"),
        Recorder(),
        label_selector=CHILD_SELECTOR,
        retry_base=0.02,
    )
    tasks = [await start(informer), await start(services)]
    try:
        assert services.lists == 1
        assert client.requests.count("list", "services") == 3
    finally:
        for task in tasks:
            await stop(task)


async def test_a_clean_end_of_the_stream_resumes_without_listing(
    emu: Emulator, client: KubeClient
) -> None:
    recorder = Recorder()
    emu.faults.add(verb="watch", plural="pods", close_watch_after_events=1, times=3)
    informer = Informer(client, POD, recorder, label_selector=CHILD_SELECTOR, retry_base=0.02)
    task = await start(informer)
    try:
        for n in range(3):
            emu.store.create("pods", pod(f"p{n}", labels=owned_labels("w")))
            await wait_until(lambda n=n: recorder.saw("ADDED", f"p{n}"))
        assert informer.lists == 1
        assert client.requests.count("watch", "pods") >= 3
    finally:
        await stop(task)


async def test_a_kind_that_is_not_served_counts_as_synced_and_empty(
    client: KubeClient, kubeconfig: Any
) -> None:
    async with Emulator() as bare:  # no NodeClaim CRD: a cluster without Karpenter
        path = bare.write_kubeconfig(kubeconfig.parent / "bare-kubeconfig")
        async with await KubeClient.from_kubeconfig(path, request_timeout=5) as kube:
            informer = Informer(kube, NODE_CLAIM, Recorder(), label_selector=CHILD_SELECTOR)
            task = await start(informer)
            try:
                assert informer.synced.is_set()
                assert len(informer) == 0
            finally:
                await stop(task)
