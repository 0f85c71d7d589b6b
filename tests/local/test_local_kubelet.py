"""The local kubelet against the emulator: it binds a pod to a matching local node, starts its
container as a process (ConfigMap files and the port passed in), reports Running and Ready from
the readiness probe, restarts a crashing container with back-off (CrashLoopBackOff, restart
count, last exit code), restarts one whose liveness probe fails, reports what cannot run and
what no node matches, and stops processes when a pod is deleted or the kubelet stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from local_support import (
    condition,
    local_node,
    stub_container,
    stub_pod,
    wait_for,
)

from kaito.kube import CONFIG_MAP, NODE, POD, KubeClient
from kaito.kube.emulated import EmulatedCluster
from kaito.local import KubeletSettings, LocalKubelet, is_running, node_matches

pytestmark = pytest.mark.timeout(30)

FAST = KubeletSettings(
    restart_base=0.2, restart_cap=0.4, start_probe_interval=0.05, stop_timeout=2.0
)


@pytest.fixture
async def kubelet(cluster: EmulatedCluster, tmp_path: Path) -> AsyncIterator[LocalKubelet]:
    changes: list[int] = []
    kl = LocalKubelet(cluster.client, tmp_path / "state", FAST, on_change=lambda: changes.append(1))
    await cluster.client.create(NODE, local_node("local-0", {"apps": "stub"}))
    await kl.start()
    yield kl
    await kl.stop()


async def pod(client: KubeClient, name: str) -> dict[str, Any]:
    return await client.get(POD, name, namespace="default")


async def ready(client: KubeClient, name: str) -> dict[str, Any] | None:
    found = await pod(client, name)
    cond = condition(found, "Ready")
    return found if cond is not None and cond["status"] == "True" else None


async def test_runs_a_pod_until_ready_and_stops_it_when_deleted(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    await client.create(
        CONFIG_MAP,
        {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"conf.txt": "hello"}},
    )
    spec = stub_pod(
        "web",
        labels={"app": "web"},
        node_selector={"apps": "stub"},
        containers=[
            stub_container(
                args=["--config", "/etc/stub/conf.txt"],
                env=[
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "KAITO_TEST_NAME", "value": "pod $(POD_NAME)"},
                ],
                mounts=[{"name": "cfg", "mountPath": "/etc/stub"}],
            )
        ],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}],
    )
    await client.create(POD, spec)
    running = await wait_for(lambda: ready(client, "web"), what="pod web Ready")
    assert running["spec"]["nodeName"] == "local-0"
    assert running["status"]["phase"] == "Running"
    assert running["status"]["podIP"] == "127.0.0.1"
    (status,) = running["status"]["containerStatuses"]
    assert status["ready"]
    assert "running" in status["state"]
    assert status["restartCount"] == 0

    (endpoint,) = kubelet.endpoints()
    assert endpoint.ready
    assert endpoint.labels["app"] == "web"
    host_port = endpoint.ports[5000]
    assert endpoint.named_ports == {"http": 5000}
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{host_port}/chat"
        async with session.post(url, json={"prompt": "hi"}) as response:
            assert await response.json() == {"Result": "echo: hi"}
    (process,) = kubelet.processes()
    assert (process.pod, process.container, process.ports) == ("web", "server", {"5000": host_port})
    log = await asyncio.to_thread(Path(process.log).read_text)
    assert f"stub listening on 127.0.0.1:{host_port} config='hello'" in log
    assert "'KAITO_TEST_NAME': 'pod web'" in log

    await client.delete(POD, "web", namespace="default")
    await wait_for(lambda: not is_running(process.pid, process.start), what="process gone")
    assert kubelet.processes() == []


async def test_crashing_container_restarts_with_backoff(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    container = stub_container(args=["--exit-after", "0.2", "--exit-code", "7"], readiness=False)
    await client.create(POD, stub_pod("crash", containers=[container]))

    async def restarted_twice() -> dict[str, Any] | None:
        found = await pod(client, "crash")
        statuses = found.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 2 else None

    status = await wait_for(restarted_twice, what="two restarts")
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert status["lastState"]["terminated"]["reason"] == "Error"
    log = await asyncio.to_thread((kubelet.pod_dir("default", "crash") / "pod.log").read_text)
    assert log.count("stub exiting") >= 2
    assert "(restart 1)" in log


async def test_waiting_reason_when_a_container_cannot_run(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    await client.create(POD, stub_pod("entry", containers=[{"name": "nginx", "image": "nginx:1"}]))

    async def waiting() -> dict[str, Any] | None:
        statuses = (await pod(client, "entry")).get("status", {}).get("containerStatuses")
        state = (statuses or [{}])[0].get("state", {})
        return state.get("waiting") if state.get("waiting", {}).get("reason") else None

    found = await wait_for(waiting, what="a waiting reason")
    assert found["reason"] == "CreateContainerError"
    assert "entrypoint of image nginx:1" in found["message"]

    copier = {"name": "adapter-x", "image": "registry.example/adapter:1", "command": ["true"]}
    await client.create(POD, stub_pod("adapters", init_containers=[copier]))

    async def init_waiting() -> dict[str, Any] | None:
        statuses = (await pod(client, "adapters")).get("status", {}).get("initContainerStatuses")
        state = (statuses or [{}])[0].get("state", {})
        return state.get("waiting") if state.get("waiting", {}).get("reason") else None

    init = await wait_for(init_waiting, what="the init container's reason")
    assert init["reason"] == "ErrImagePull"
    stored = await pod(client, "adapters")
    assert condition(stored, "Initialized")["status"] == "False"


async def test_init_containers_run_first(cluster: EmulatedCluster, kubelet: LocalKubelet) -> None:
    client = cluster.client
    marker = kubelet.directory / "init-ran"
    init = {
        "name": "prep",
        "image": "example.com/stub:1",  # the main container's image: its files are here
        "command": ["sh", "-c", f"echo prepared > {marker}"],
    }
    await client.create(POD, stub_pod("inits", init_containers=[init]))
    found = await wait_for(lambda: ready(client, "inits"), what="pod Ready after its init")
    assert (await asyncio.to_thread(marker.read_text)).strip() == "prepared"
    (init_status,) = found["status"]["initContainerStatuses"]
    assert init_status["state"]["terminated"]["reason"] == "Completed"
    assert condition(found, "Initialized")["status"] == "True"


async def test_failed_liveness_probe_restarts_the_container(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    liveness = {
        "httpGet": {"path": "/health", "port": 5000},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    container = stub_container(args=["--unhealthy-after", "0.5"], liveness=liveness)
    await client.create(POD, stub_pod("sick", containers=[container]))

    async def restarted() -> bool:
        statuses = (await pod(client, "sick")).get("status", {}).get("containerStatuses")
        return bool(statuses) and statuses[0].get("restartCount", 0) >= 1

    await wait_for(restarted, limit=15, what="a restart after the liveness probe failed")


async def test_pods_no_local_node_matches_stay_pending(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    await client.create(POD, stub_pod("elsewhere", node_selector={"apps": "other"}))

    async def unschedulable() -> dict[str, Any] | None:
        return condition(await pod(client, "elsewhere"), "PodScheduled")

    cond = await wait_for(unschedulable, what="PodScheduled=False")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert "no local node (local-0) matches" in cond["message"]
    assert (await pod(client, "elsewhere"))["spec"].get("nodeName") is None


async def test_stop_ends_every_process(cluster: EmulatedCluster, tmp_path: Path) -> None:
    client = cluster.client
    await client.create(NODE, local_node("local-1"))
    kubelet = LocalKubelet(client, tmp_path / "other", FAST)
    await kubelet.start()
    try:
        for name in ("a", "b"):
            await client.create(POD, stub_pod(name))
        await wait_for(lambda: len(kubelet.processes()) == 2, what="two processes")
        processes = kubelet.processes()
    finally:
        await kubelet.stop()
    assert all(not is_running(p.pid, p.start) for p in processes)
    assert kubelet.processes() == []


def test_node_matching_follows_selector_and_required_affinity() -> None:
    node = {"metadata": {"name": "n1", "labels": {"apps": "phi-3", "zone": "a", "gpus": "2"}}}

    def pod_with(**spec: Any) -> dict[str, Any]:
        return {"spec": spec}

    def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
        required = {"nodeSelectorTerms": list(terms)}
        return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}

    assert node_matches(pod_with(), node)
    assert node_matches(pod_with(nodeSelector={"apps": "phi-3"}), node)
    assert not node_matches(pod_with(nodeSelector={"apps": "x"}), node)
    hostname = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
    assert not node_matches(pod_with(affinity=affinity({"matchExpressions": [hostname]})), node)
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert node_matches(pod_with(affinity=affinity(by_name)), node)
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]},
        {
            "matchExpressions": [
                {"key": "apps", "operator": "Exists"},
                {"key": "gpus", "operator": "Gt", "values": ["1"]},
                {"key": "spot", "operator": "DoesNotExist"},
            ]
        },
    ]
    assert node_matches(pod_with(affinity=affinity(*terms)), node)
    assert not node_matches(pod_with(affinity=affinity(terms[0])), node)


async def test_bound_pods_of_other_nodes_are_left_alone(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    other = stub_pod("remote")
    other["spec"]["nodeName"] = "some-cloud-node"
    await client.create(POD, other)
    await asyncio.sleep(0.5)
    assert kubelet.processes() == []
    assert "containerStatuses" not in (await pod(client, "remote")).get("status", {})
