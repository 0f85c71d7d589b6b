"""The `local` provisioner: this machine is the node (the local mode's provisioner).

`kaito up` runs a workspace on the machine it is typed on, so there is nothing to create in a
cloud: the provisioner writes one Node object per workspace that stands for this machine, with
what the machine really has. GPUs are found with `nvidia-smi` (or with torch when the NVIDIA
driver is there but the tool is not); a machine without them is offered as a CPU node.

The instance type a workspace names is a cloud's; it says nothing about this machine, so the
local mode sizes the model against the machine instead. The provisioner is a `NodeDescriber`:
the reconciler asks it what the node offers and plans for that. A GPU machine is described by
its GPUs (product, count, memory of the smallest, compute capability), under the pseudo
instance type `local-gpu`. A CPU machine becomes the pseudo instance type `local-cpu`: one
"accelerator" whose memory is the machine's RAM, so the planner's arithmetic (weights, KV cache,
overhead against usable memory) decides whether the model fits in memory, and the plan puts
the whole model on that one device. The workload's pod then asks for `nvidia.com/gpu: 1`,
which the local kubelet does not enforce; a CPU node offers no GPUs and is usable anyway
(readiness checks `gpus_per_node` 0 for it, the protocol's rule for CPU-only local nodes).

Detection is injectable (`detect_machine(probes=...)`, `LocalProvisioner(machine=...)`), so the
CPU and GPU paths are tested on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs

from kaito.kube import NODE, AlreadyExists, Client, NotFound, RawObject
from kaito.provisioners._nodes import (
    ARCH_LABEL,
    GPU_COMPUTE_MAJOR_LABEL,
    GPU_COMPUTE_MINOR_LABEL,
    GPU_COUNT_LABEL,
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    HOSTNAME_LABEL,
    INSTANCE_TYPE_LABEL,
    OS_LABEL,
    assess_nodes,
    check_options,
    is_terminating,
    list_nodes,
    name_of,
    node_name,
    selector_labels,
    selector_string,
    workspace_labels,
)
from kaito.provisioners._protocol import (
    GPU_RESOURCE,
    NodeFacts,
    NodeRequest,
    ProvisionerContext,
    ProvisionStatus,
)

__all__ = [
    "CPU_INSTANCE_TYPE",
    "GPU_INSTANCE_TYPE",
    "LOCAL_NODE_LABEL",
    "Gpu",
    "GpuProbe",
    "LocalProvisioner",
    "Machine",
    "detect_machine",
    "nvidia_smi_gpus",
    "parse_nvidia_smi",
    "torch_gpus",
]

CPU_INSTANCE_TYPE: Final = "local-cpu"
"""The pseudo instance type of a machine without GPUs: one device with the machine's RAM."""
GPU_INSTANCE_TYPE: Final = "local-gpu"
"""The pseudo instance type of a machine with NVIDIA GPUs."""
LOCAL_NODE_LABEL: Final = "kaito.sh/local-machine"
"""On every Node the local provisioner writes: the machine's host name. The local kubelet runs
the pods bound to nodes that carry it."""
CPU_PRODUCT: Final = "cpu"
UNKNOWN_CAPABILITY: Final = "0.0"
"""Compute capability when it is not known (and for CPUs): the planner then assumes no
bfloat16 support and runs bfloat16 presets in float16."""

OPTIONS: Final = ("gpus",)
GPU_MODES: Final = ("auto", "none")
DEFAULT_PODS: Final = 110

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_ONE_MACHINE: Final = "LocalMachineOnly"
REASON_INSUFFICIENT: Final = "InsufficientGPUs"
REASON_INVALID: Final = "InvalidNodeRequest"

_MIB: Final = 2**20
_GIB: Final = 2**30


@attrs.frozen
class Gpu:
    """One GPU of this machine."""

    product: str
    memory_bytes: int
    compute_capability: str = UNKNOWN_CAPABILITY


def _gpu_tuple(value: Iterable[Gpu]) -> tuple[Gpu, ...]:
    return tuple(value)


@attrs.frozen
class Machine:
    """What this machine offers a workload."""

    hostname: str
    cpus: int
    memory_bytes: int
    gpus: tuple[Gpu, ...] = attrs.field(default=(), converter=_gpu_tuple)

    @property
    def instance_type(self) -> str:
        return GPU_INSTANCE_TYPE if self.gpus else CPU_INSTANCE_TYPE

    def without_gpus(self) -> Machine:
        return attrs.evolve(self, gpus=())

    def facts(self, nodes: Sequence[str] = ()) -> NodeFacts:
        """The machine as `NodeFacts` for the planner (see the module docstring)."""
        if not self.gpus:
            return NodeFacts(
                nodes=tuple(nodes),
                instance_type=CPU_INSTANCE_TYPE,
                gpu_product=CPU_PRODUCT,
                gpu_count=1,
                gpu_memory_bytes=self.memory_bytes,
                compute_capability=UNKNOWN_CAPABILITY,
            )
        return NodeFacts(
            nodes=tuple(nodes),
            instance_type=GPU_INSTANCE_TYPE,
            gpu_product=self.gpus[0].product,
            gpu_count=len(self.gpus),
            gpu_memory_bytes=min(g.memory_bytes for g in self.gpus),
            compute_capability=min((g.compute_capability for g in self.gpus), key=_capability_key),
        )

    def summary(self) -> str:
        """One line for people: "2 CPUs, 23.4 GiB memory, no GPU"."""
        text = f"{self.cpus} CPUs, {self.memory_bytes / _GIB:.1f} GiB memory"
        if not self.gpus:
            return f"{text}, no GPU"
        products = sorted({g.product for g in self.gpus})
        memory = min(g.memory_bytes for g in self.gpus) / _GIB
        return f"{text}, {len(self.gpus)} GPU(s): {', '.join(products)} ({memory:.0f} GiB each)"


def _capability_key(capability: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in capability.split("."))
    except ValueError:
        return (0,)


# -- detection ------------------------------------------------------------------------------

GpuProbe = Callable[[], Sequence[Gpu] | None]
"""Finds the machine's GPUs: a list (empty: none), or None when this probe cannot tell."""

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]

_CAPABILITY = re.compile(r"^[0-9]+\.[0-9]+$")
NVIDIA_DRIVER = Path("/proc/driver/nvidia")
"""Present where the NVIDIA kernel driver is loaded."""


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from `nvidia-smi --query-gpu=name,memory.total[,compute_cap] --format=csv,noheader,
    nounits` output (memory in MiB). Raises `ValueError` for lines it cannot read."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        try:
            memory = int(float(fields[1]) * _MIB)
        except ValueError:
            raise ValueError(f"unexpected GPU memory in nvidia-smi line: {line!r}") from None
        capability = fields[2] if len(fields) > 2 else ""
        gpus.append(
            Gpu(
                product=fields[0],
                memory_bytes=memory,
                compute_capability=capability
                if _CAPABILITY.match(capability)
                else UNKNOWN_CAPABILITY,
            )
        )
    return gpus


def nvidia_smi_gpus(executable: str = "nvidia-smi", *, run: Runner = _run) -> list[Gpu] | None:
    """The GPUs `nvidia-smi` lists; None when the tool is missing or fails. Older drivers do not
    know `compute_cap`; the query is then repeated without it."""
    path = shutil.which(executable)
    if path is None:
        return None
    for fields in ("name,memory.total,compute_cap", "name,memory.total"):
        try:
            done = run([path, f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode == 0:
            try:
                return parse_nvidia_smi(done.stdout)
            except ValueError:
                return None
    return None


_TORCH_QUERY = """\
import json
import torch

cuda = torch.cuda
count = cuda.device_count() if cuda.is_available() else 0
props = [cuda.get_device_properties(i) for i in range(count)]
print(json.dumps([[p.name, p.total_memory, f"{p.major}.{p.minor}"] for p in props]))
"""


def torch_gpus(
    *, run: Runner = _run, driver: Path = NVIDIA_DRIVER, python: str = sys.executable
) -> list[Gpu] | None:
    """The CUDA devices torch sees; None without torch or without an NVIDIA driver. Torch is
    asked in a child process (importing it takes seconds and hundreds of megabytes, which the
    long-running local mode should not hold), and only where a driver is installed."""
    if not driver.exists() or importlib.util.find_spec("torch") is None:
        return None
    try:
        done = run([python, "-c", _TORCH_QUERY])
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        return [Gpu(str(name), int(memory), str(capability)) for name, memory, capability in rows]
    except (ValueError, IndexError, TypeError):
        return None


DEFAULT_PROBES: tuple[GpuProbe, ...] = (nvidia_smi_gpus, torch_gpus)


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * _GIB  # nothing tells; a size the planner can work with


def detect_machine(
    probes: Sequence[GpuProbe] | None = None,
    *,
    hostname: str | None = None,
    cpus: int | None = None,
    memory_bytes: int | None = None,
) -> Machine:
    """This machine: host name, CPUs, memory, and the GPUs the first conclusive probe finds
    (default: `nvidia-smi`, then torch). The keyword arguments override what is detected."""
    gpus: Sequence[Gpu] = ()
    for probe in DEFAULT_PROBES if probes is None else probes:
        found = probe()
        if found is not None:
            gpus = found
            break
    return Machine(
        hostname=hostname or socket.gethostname() or "localhost",
        cpus=cpus or os.cpu_count() or 1,
        memory_bytes=memory_bytes or _memory_bytes(),
        gpus=tuple(gpus),
    )


# -- the provisioner ------------------------------------------------------------------------


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    return value[:63].rstrip("-_.") or "local"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine or "amd64")


class LocalProvisioner:
    """Offers this machine as the node of each workspace (one Node object per workspace).

    Option `gpus`: `auto` (default: use the GPUs found) or `none` (run on the CPU even where
    GPUs exist). `machine` replaces detection (tests; or a machine described by hand).
    """

    name = "local"

    def __init__(self, ctx: ProvisionerContext, *, machine: Machine | None = None) -> None:
        options: Mapping[str, str] = ctx.options
        check_options(self.name, options, OPTIONS)
        mode = options.get("gpus", "auto")
        if mode not in GPU_MODES:
            raise ValueError(
                f"option gpus={mode!r} of the local provisioner must be one of "
                f"{', '.join(GPU_MODES)}"
            )
        found = machine if machine is not None else detect_machine()
        self.machine = found.without_gpus() if mode == "none" else found
        self.client: Client = ctx.client

    # -- the desired object (no I/O) ----------------------------------------------------------

    def node(self, request: NodeRequest) -> RawObject:
        """The Node standing for this machine in the workspace, status included."""
        machine = self.machine
        name = node_name(request.workspace_namespace, request.workspace_name, 0)
        user_labels, _ = selector_labels(request)
        labels = {
            **user_labels,
            **workspace_labels(request),
            HOSTNAME_LABEL: name,
            OS_LABEL: platform.system().lower() or "linux",
            ARCH_LABEL: _arch(),
            INSTANCE_TYPE_LABEL: machine.instance_type,
            LOCAL_NODE_LABEL: _label_value(machine.hostname),
        }
        resources = {
            "cpu": str(machine.cpus),
            "memory": f"{machine.memory_bytes // 1024}Ki",
            "pods": str(DEFAULT_PODS),
        }
        if machine.gpus:
            facts = machine.facts()
            major, _, minor = (facts.compute_capability or UNKNOWN_CAPABILITY).partition(".")
            labels.update(
                {
                    GPU_PRODUCT_LABEL: _label_value(facts.gpu_product or "gpu"),
                    GPU_COUNT_LABEL: str(len(machine.gpus)),
                    GPU_MEMORY_LABEL: str((facts.gpu_memory_bytes or 0) // _MIB),
                    GPU_COMPUTE_MAJOR_LABEL: major,
                    GPU_COMPUTE_MINOR_LABEL: minor,
                }
            )
            resources[GPU_RESOURCE] = str(len(machine.gpus))
        now = _now()
        return {
            "apiVersion": NODE.api_version,
            "kind": NODE.kind,
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"kaito.sh/local-machine-summary": machine.summary()},
            },
            "spec": {
                "taints": [
                    {"key": t.key, "value": t.value, "effect": t.effect} for t in request.taints
                ]
            },
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "LocalMachineReady",
                        "message": "this machine, offered by kaito's local provisioner",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": machine.hostname},
                ],
                "nodeInfo": {
                    "operatingSystem": platform.system().lower() or "linux",
                    "architecture": _arch(),
                },
            },
        }

    # -- the protocol --------------------------------------------------------------------------

    async def describe_nodes(self, request: NodeRequest) -> NodeFacts:
        """This machine, whatever instance type the request names (see the module docstring)."""
        name = node_name(request.workspace_namespace, request.workspace_name, 0)
        return self.machine.facts(nodes=(name,))

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Write the workspace's Node (Ready at once) and report it; one machine is one node."""
        machine = self.machine
        if request.count > 1:
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=REASON_ONE_MACHINE,
                message=f"the plan needs {request.count} nodes, and the local mode has one: "
                f"this machine ({machine.summary()}); use a smaller preset or resource.count 1",
            )
        if machine.gpus and request.gpus_per_node > len(machine.gpus):
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=REASON_INSUFFICIENT,
                message=f"this machine has {len(machine.gpus)} GPU(s), the plan needs "
                f"{request.gpus_per_node}",
            )
        try:
            wanted = self.node(request)
        except ValueError as exc:
            return ProvisionStatus(
                ready=False, failed=True, reason=REASON_INVALID, message=str(exc)
            )
        selector = selector_string(workspace_labels(request))
        existing = {name_of(n): n for n in await list_nodes(self.client, selector)}
        for name, node in existing.items():
            if name != name_of(wanted) and not is_terminating(node):
                await self._delete(name)
        found = existing.get(name_of(wanted))
        if found is None:
            found = await self._create(wanted)
        elif not is_terminating(found) and _drifted(found, wanted):
            found = await self._refresh(found, wanted)
        assessment = assess_nodes(
            [found],
            count=1,
            instance_type="",
            gpus_per_node=request.gpus_per_node if machine.gpus else 0,
        )
        message = f"{assessment.message} (this machine: {machine.instance_type})"
        if assessment.enough:
            return ProvisionStatus(
                ready=True, nodes=assessment.ready, reason=REASON_READY, message=message
            )
        # The node of an earlier workspace of the same name is still being deleted.
        return ProvisionStatus(
            ready=False, reason=REASON_WAITING, message=message, requeue_after=1.0
        )

    async def release(self, request: NodeRequest) -> bool:
        """Delete the workspace's Node; True once none is left."""
        selector = selector_string(workspace_labels(request))
        left = False
        for node in await list_nodes(self.client, selector):
            if is_terminating(node) or not await self._delete(name_of(node)):
                left = True
        return not left

    # -- helpers -----------------------------------------------------------------------------

    async def _create(self, node: Mapping[str, Any]) -> RawObject:
        try:
            return await self.client.create(NODE, node)
        except AlreadyExists:
            return await self.client.get(NODE, name_of(node))

    async def _refresh(self, found: RawObject, wanted: RawObject) -> RawObject:
        """Bring labels and status back to what the machine is (someone changed them)."""
        name = name_of(found)
        if _labels_drifted(found, wanted):
            found = await self.client.patch(
                NODE, name, {"metadata": {"labels": wanted["metadata"]["labels"]}},
                field_manager="kaito",
            )  # fmt: skip
        if _status_drifted(found, wanted):
            found = await self.client.patch_status(
                NODE, name, {"status": wanted["status"]}, field_manager="kaito"
            )
        return found

    async def _delete(self, name: str) -> bool:
        try:
            result = await self.client.delete(NODE, name)
        except NotFound:
            return True
        return result.gone


def _ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _labels_drifted(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    labels = (found.get("metadata") or {}).get("labels") or {}
    return any(labels.get(k) != v for k, v in wanted["metadata"]["labels"].items())


def _status_drifted(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    allocatable = (found.get("status") or {}).get("allocatable")
    return allocatable != wanted["status"]["allocatable"] or not _ready(found)


def _drifted(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return _labels_drifted(found, wanted) or _status_drifted(found, wanted)
