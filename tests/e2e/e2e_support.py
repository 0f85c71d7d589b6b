"""Helpers of the end-to-end tests: an emulated cluster with the simulators, operators run as
tasks (each with its own client, as separate processes would have), and bounded waits that say
what the workspace looked like when they gave up.

Everything here goes through the public API: `kaito.testing.kaito_cluster` for the cluster,
`kaito.operator.Operator` and `workspace_reconciler` for the operator, `KubeClient` over HTTP
for every read and write. Plugins are registered into the test's own `Registry` explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from kaito.kube import (
    NAMESPACE,
    NODE,
    NODE_CLAIM,
    POD,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
    KubeClient,
    NotFound,
    RawObject,
)
from kaito.kube.emulated import EmulatedCluster
from kaito.kube.simulators import SimulatorConfig, Stage
from kaito.operator import Operator, OperatorSettings, workspace_reconciler
from kaito.plugins import Registry
from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL
from kaito.testing import kaito_cluster

SEED_DIR = Path(__file__).resolve().parent.parent / "data" / "seed"

NS = "default"
LEASE_NAMESPACE = "kaito-system"
V1ALPHA1 = attrs.evolve(WORKSPACE, version="v1alpha1")
"""The Workspace kind at the seed's version, to create the seed as kubectl would."""

PHI3 = "phi-3-mini-4k-instruct"
NC6 = "Standard_NC6s_v3"
LLAMA70 = "llama-3.3-70b-instruct"
A100X2 = "Standard_NC48ads_A100_v4"
"""Two A100 80GB per node: llama-3.3-70b needs two such nodes."""

CONDITION_TYPES = (
    "ResourceReady",
    "NodeClaimReady",
    "NodesReady",
    "InferenceReady",
    "WorkspaceReady",
)


def registry() -> Registry:
    """The built-in provisioners and runtimes, registered by hand (no entry points)."""
    from kaito.provisioners.byo import BYOProvisioner
    from kaito.provisioners.fake import FakeProvisioner
    from kaito.provisioners.karpenter import KarpenterProvisioner
    from kaito.runtimes.hf._runtime import HuggingFaceRuntime
    from kaito.runtimes.tgi import TGIRuntime
    from kaito.runtimes.triton import TritonRuntime
    from kaito.runtimes.vllm import VLLMRuntime

    reg = Registry()
    reg.add_provisioner("karpenter", KarpenterProvisioner)
    reg.add_provisioner("byo", BYOProvisioner)
    reg.add_provisioner("fake", FakeProvisioner)
    reg.add_runtime("hf", HuggingFaceRuntime)
    reg.add_runtime("vllm", VLLMRuntime)
    reg.add_runtime("tgi", TGIRuntime)
    reg.add_runtime("triton", TritonRuntime)
    return reg


def operator_settings(**overrides: Any) -> OperatorSettings:
    """Operator settings for tests: loopback ports picked by the OS, fast retries and leases,
    no leader election unless asked for."""
    values: dict[str, Any] = {
        "provisioner": "karpenter",
        "metrics_addr": "127.0.0.1:0",
        "health_addr": "127.0.0.1:0",
        "leader_election": False,
        "lease_namespace": LEASE_NAMESPACE,
        "lease_duration": 3.0,
        "renew_deadline": 2.0,
        "retry_period": 0.1,
        "backoff_base": 0.05,
        "backoff_cap": 0.5,
        "shutdown_timeout": 3.0,
        "concurrency": 2,
    }
    values.update(overrides)
    return OperatorSettings(**values)


# -- documents --------------------------------------------------------------------------------


def seed(name: str) -> dict[str, Any]:
    """A seed document exactly as the user wrote it (kubectl adds the namespace)."""
    data = yaml.safe_load((SEED_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    data["metadata"]["namespace"] = NS
    return data


def inference_workspace(
    name: str,
    *,
    preset: str = PHI3,
    instance_type: str | None = NC6,
    selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A v1beta1 preset inference workspace."""
    resource: dict[str, Any] = {"labelSelector": {"matchLabels": dict(selector or {"apps": name})}}
    if instance_type is not None:
        resource["instanceType"] = instance_type
    doc: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": NS},
        "resource": resource,
        "inference": {"preset": {"name": preset}},
    }
    if annotations:
        doc["metadata"]["annotations"] = dict(annotations)
    return doc


def owned_by(name: str) -> dict[str, str]:
    """The labels kaito puts on everything it creates for workspace `name`."""
    return {WORKSPACE_LABEL: name, WORKSPACE_NAMESPACE_LABEL: NS}


def condition(ws: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((ws or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def is_condition(
    type_: str, status: str, reason: str | None = None
) -> Callable[[Mapping[str, Any] | None], bool]:
    """A predicate on a workspace: the condition has this status (and reason)."""

    def check(ws: Mapping[str, Any] | None) -> bool:
        cond = condition(ws, type_)
        return (
            cond is not None
            and cond.get("status") == status
            and (reason is None or cond.get("reason") == reason)
        )

    return check


def describe(ws: Mapping[str, Any] | None) -> str:
    """The workspace's conditions, one a line, for failure messages."""
    if ws is None:
        return "  (the workspace does not exist)"
    status = ws.get("status") or {}
    lines = [
        f"  {c.get('type')}={c.get('status')} reason={c.get('reason')!r} "
        f"message={c.get('message')!r} observedGeneration={c.get('observedGeneration')}"
        for c in status.get("conditions") or []
    ]
    lines.append(f"  state={status.get('state')!r} generation={ws['metadata'].get('generation')}")
    lines.append(f"  finalizers={ws['metadata'].get('finalizers')}")
    return "\n".join(lines)


def gpu_node(name: str, labels: Mapping[str, str], *, gpus: int = 1) -> RawObject:
    """A Ready GPU Node as its kubelet, the NVIDIA device plugin and GPU feature discovery
    would report it (for bring-your-own-nodes workspaces)."""
    resources = {"cpu": "6", "memory": "112Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "nvidia.com/gpu.product": "Tesla-V100-PCIE-16GB",
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": "16384",
                "nvidia.com/gpu.compute.major": "7",
                "nvidia.com/gpu.compute.minor": "0",
                **labels,
            },
        },
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}
            ],
        },
    }


# -- operators --------------------------------------------------------------------------------


@attrs.define
class RunningOperator:
    """An operator running in a task on a client of its own."""

    operator: Operator
    client: KubeClient
    task: asyncio.Task[None]

    @property
    def is_leader(self) -> bool:
        return self.operator.is_leader

    def reconciles(self) -> float:
        """How many reconciles this operator finished (of any outcome)."""
        m = self.operator.metrics
        return sum(
            m.sample("kaito_reconcile_total", {"result": r})
            for r in ("success", "requeue", "error", "terminal")
        )

    def idle(self) -> bool:
        """Nothing queued or running (always True when not leading); a key scheduled for
        later (a requeue_after) does not count."""
        queue = self.operator.queue
        if queue is None:
            return True
        return len(queue) == 0 and not queue.processing

    async def stop(self) -> None:
        """Stop gracefully (what SIGTERM does): drain, release the lease."""
        self.operator.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        finally:
            await self.kill()

    async def kill(self) -> None:
        """End at once, mid-reconcile if need be (what SIGKILL does): nothing is released."""
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.close()


@attrs.define
class Env:
    """An emulated cluster with the simulators running, and operators started on it."""

    cluster: EmulatedCluster
    client: KubeClient
    """The test's own client (the operators and the simulators have theirs)."""
    operators: list[RunningOperator] = attrs.field(factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.kubeconfig

    async def new_client(self) -> KubeClient:
        return await KubeClient.from_kubeconfig(self.kubeconfig, request_timeout=10)

    async def start_operator(self, **overrides: Any) -> RunningOperator:
        """An `Operator` driving kaito's `WorkspaceReconciler` (built by `workspace_reconciler`
        from the settings, as `kaito operator run` does), on a new client."""
        settings = operator_settings(**overrides)
        client = await self.new_client()
        operator = Operator(client, workspace_reconciler(client, settings, registry()), settings)
        task = asyncio.create_task(operator.run(), name=f"operator {operator.identity}")
        running = RunningOperator(operator, client, task)
        self.operators.append(running)
        try:
            await asyncio.wait_for(operator.started.wait(), 5)
        except BaseException:
            await running.kill()
            raise
        return running

    async def workspace(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(WORKSPACE, name, namespace=NS)
        except NotFound:
            return None

    async def wait_for(
        self,
        name: str,
        predicate: Callable[[Mapping[str, Any] | None], bool],
        *,
        what: str,
        within: float = 15.0,
    ) -> dict[str, Any] | None:
        """Poll the workspace until `predicate(workspace)` holds; on timeout fail with its
        conditions."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            ws = await self.workspace(name)
            if predicate(ws):
                return ws
            if loop.time() > deadline:
                raise AssertionError(
                    f"workspace {NS}/{name}: timed out after {within}s waiting for {what}; "
                    f"it shows:\n{describe(ws)}\n{await self.children(name)}"
                )
            await asyncio.sleep(0.05)

    async def wait_ready(self, name: str, within: float = 15.0) -> dict[str, Any]:
        ws = await self.wait_for(
            name, is_condition("WorkspaceReady", "True"), what="WorkspaceReady True", within=within
        )
        assert ws is not None
        return ws

    async def until(
        self, predicate: Callable[[], bool], *, what: str, within: float = 10.0
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            await asyncio.sleep(0.02)

    async def settle(self, *running: RunningOperator, within: float = 10.0) -> None:
        """Wait until the simulators and the given operators have nothing left to do, twice in
        a row (a status write wakes the workspace once more; that pass must find nothing)."""
        sims = self.cluster.simulators
        assert sims is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        quiet = 0
        while quiet < 2:
            if loop.time() > deadline:
                raise AssertionError(f"the cluster did not settle within {within}s")
            await sims.idle(limit=within)
            await asyncio.sleep(0.1)
            quiet = quiet + 1 if all(r.idle() for r in running) else 0

    async def names(self, kind: Any, name: str, *, namespaced: bool = True) -> list[str]:
        """Names of the objects of `kind` labelled for workspace `name`."""
        items = (
            await self.client.list(
                kind, namespace=NS if namespaced else None, label_selector=owned_by(name)
            )
        ).items
        return sorted(str(o["metadata"]["name"]) for o in items)

    async def children(self, name: str) -> str:
        """A one-line summary of what exists for workspace `name` (for failure messages)."""
        parts = []
        for label, kind, namespaced in (
            ("nodeclaims", NODE_CLAIM, False),
            ("nodes", NODE, False),
            ("statefulsets", STATEFUL_SET, True),
            ("services", SERVICE, True),
            ("pods", POD, True),
        ):
            try:
                parts.append(f"{label}={await self.names(kind, name, namespaced=namespaced)}")
            except Exception as exc:
                parts.append(f"{label}=<{type(exc).__name__}>")
        return "  children: " + " ".join(parts)


@contextlib.asynccontextmanager
async def environment(stages: Iterable[Stage | Iterable[Stage]] = ()) -> AsyncIterator[Env]:
    """Start an `Env` (with extra simulator stages, or lists of them as the failure helpers
    return); stop every operator, client and the cluster afterwards."""
    config = SimulatorConfig(stages=tuple(stages))
    async with kaito_cluster(simulator_config=config) as cluster:
        client = await KubeClient.from_kubeconfig(cluster.kubeconfig, request_timeout=10)
        env = Env(cluster, client)
        try:
            await client.create(NAMESPACE, {"metadata": {"name": LEASE_NAMESPACE}})
            yield env
        finally:
            # Every operator is ended even if one of them failed; the first failure is raised.
            failures: list[BaseException] = []
            for running in env.operators:
                try:
                    await running.kill()
                except Exception as exc:
                    failures.append(exc)
            await client.close()
            if failures:
                raise failures[0]


MakeEnv = Callable[..., Awaitable[Env]]
"""The `make_env` fixture: `await make_env(*stages)` starts an `Env` with those stages."""
