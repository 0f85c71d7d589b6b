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
from kaito.local._containers import CannotRun, nested_links, volume_files
from kaito.local._kubelet import log_tail

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


async def test_a_failed_run_to_completion_pod_reports_the_tail_of_its_log(
    cluster: EmulatedCluster, kubelet: LocalKubelet
) -> None:
    client = cluster.client
    lines = "; ".join(f"echo line {i}" for i in range(100))
    script = f"{lines}; echo 'ERROR kaito.tuning: error: no data' >&2; exit 3"
    failing = {
        "name": "job",
        "image": "example.com/stub:1",
        "command": ["sh", "-c", script],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    plain = {**failing, "name": "plain", "terminationMessagePolicy": "File"}
    await client.create(POD, stub_pod("batch", containers=[failing], restart_policy="Never"))
    await client.create(POD, stub_pod("quiet", containers=[plain], restart_policy="Never"))

    async def finished(name: str) -> dict[str, Any] | None:
        found = await pod(client, name)
        return found if found["status"].get("phase") == "Failed" else None

    failed = await wait_for(lambda: finished("batch"), what="the pod Failed")
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3
    message = terminated["message"].splitlines()
    assert len(message) == 80  # a kubelet's limit: the last 80 lines
    assert message[-1] == "ERROR kaito.tuning: error: no data"
    assert message[0] == "line 21"
    quiet = await wait_for(lambda: finished("quiet"), what="the other pod Failed")
    assert "message" not in quiet["status"]["containerStatuses"][0]["state"]["terminated"]


def test_a_log_tail_keeps_to_the_byte_limit_and_drops_a_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "pod.log"
    log.write_text("old run\n" + "".join(f"{i:04d} {'x' * 95}\n" for i in range(40)))
    tail = log_tail(log, offset=len("old run\n"))
    assert len(tail.encode()) <= 2048
    assert tail.splitlines()[-1].startswith("0039 ")
    assert all(len(line) == 100 for line in tail.splitlines())  # no half line at the start
    assert log_tail(log, offset=log.stat().st_size) == ""
    assert log_tail(tmp_path / "missing.log") == ""
    # The offset alone keeps an earlier run's lines out.
    short = tmp_path / "short.log"
    short.write_text("previous run failed\n--- header\nthis run\n")
    assert log_tail(short, offset=len("previous run failed\n--- header\n")) == "this run"
    # A cut that falls on a line start keeps that whole line.
    exact = tmp_path / "exact.log"
    exact.write_bytes(b"x" * 99 + b"\n" + b"y" * 2047 + b"\n")
    assert log_tail(exact) == "y" * 2047


async def test_a_volume_mounted_inside_another_shows_up_in_its_listing(
    cluster: EmulatedCluster, kubelet: LocalKubelet, tmp_path: Path
) -> None:
    # A volume adapter is mounted at /mnt/adapter/NAME, inside the adapters directory the
    # server lists; a process sees the adapter there through a symbolic link.
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    listing = kubelet.directory / "listing"
    container = {
        "name": "lister",
        "image": "example.com/stub:1",
        "command": ["sh", "-c", f"ls /mnt/adapter > {listing}; cat /mnt/adapter/a/*.json"],
        "volumeMounts": [{"name": "adapter-a", "mountPath": "/mnt/adapter/a"}],
    }
    volumes = [{"name": "adapter-a", "hostPath": {"path": str(adapter)}}]
    await client_create_and_wait_succeeded(cluster.client, "lister", container, volumes)
    assert (await asyncio.to_thread(listing.read_text)).split() == ["a"]
    log = kubelet.pod_dir("default", "lister") / "pod.log"
    assert "{}" in await asyncio.to_thread(log.read_text)


async def client_create_and_wait_succeeded(
    client: KubeClient, name: str, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    await client.create(
        POD, stub_pod(name, containers=[container], volumes=volumes, restart_policy="Never")
    )

    async def succeeded() -> dict[str, Any] | None:
        found = await pod(client, name)
        return found if found["status"].get("phase") == "Succeeded" else None

    return await wait_for(succeeded, what=f"pod {name} Succeeded")


def test_a_secret_that_is_not_base64_is_a_waiting_reason() -> None:
    volume = {"name": "s", "secret": {"secretName": "creds"}}
    with pytest.raises(CannotRun) as raised:
        volume_files(volume, {("secret", "creds"): {"config": "{not base64}"}})
    assert raised.value.reason == "CreateContainerConfigError"
    assert raised.value.message == "key config of Secret creds is not base64"


def test_nested_mounts_become_links_in_the_outer_volume() -> None:
    mounts = {
        "/mnt/adapter": "/state/adapters",
        "/mnt/adapter/a": "/data/a",
        "/mnt/adapter/a/extra": "/data/extra",
        "/mnt/config": "/state/config",
        "/mnt/adapterx": "/state/x",
    }
    assert nested_links(mounts) == [
        ("/state/adapters/a", "/data/a"),
        ("/data/a/extra", "/data/extra"),
    ]
    # An inner mount that is the outer volume's own sub-directory (subPath) needs no link.
    assert nested_links({"/mnt/a": "/v", "/mnt/a/b": "/v/b", "/mnt/a/c": "/v"}) == []
