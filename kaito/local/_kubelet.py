"""The local kubelet: runs the pods bound to this machine's nodes as processes.

In a cluster, the scheduler binds a pod to a node and that node's kubelet starts its
containers, probes them and reports their state in the pod's status. The local mode has no
container engine and one machine, so this class does both jobs for the nodes the local
provisioner writes (those labelled `kaito.sh/local-machine`):

- **binding**: a pending pod goes to a local node that satisfies its node selector and required
  node affinity (the workspace's own node first); resources and taints are not checked, since
  the one machine is all there is. A pod no local node matches is reported Unschedulable.
- **running**: each container becomes a process (see `_containers`): volumes are directories
  under `<state dir>/pods/<namespace>_<pod>/volumes/` (a ConfigMap's data written as files, an
  emptyDir empty, a hostPath used where it is; kaito's adapters directory is an empty
  directory there also when the pod mounts no adapters), every container port gets its own
  port on 127.0.0.1, and the output of all the pod's containers goes to one log file,
  `<pod dir>/pod.log`. Init containers run first, one after the other, to completion.
- **probing**: startup, readiness and liveness probes (HTTP GET, TCP, exec) as the spec says,
  except that probes are tried every `start_probe_interval` seconds until the first success
  (a local model is ready in seconds; waiting a 10-second period would only make the user
  wait), and that the readiness period is capped at `probe_period_cap`. A startup probe gets
  the spec's time budget (failureThreshold x period) before the container is restarted.
- **restarting**: a container that exits (or fails its liveness probe) is restarted with an
  exponential back-off (`restart_base` doubling up to `restart_cap`; reset when it had run for
  `reset_after` seconds), shown as CrashLoopBackOff with the last exit code, as a kubelet does.
- **status**: the pod's phase, conditions and container statuses are written through the
  status writer whenever they change, so the StatefulSet controller and the reconciler see
  the pod the way they would on a cluster.

A pod that is deleted (or marked for deletion) is stopped: SIGTERM to its process group, then
SIGKILL after `stop_timeout`. `stop()` stops every pod the same way; nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from kaito.kube import CONFIG_MAP, NODE, POD, SECRET, Client, KubeError, NotFound, RawObject
from kaito.local._containers import (
    CannotRun,
    LocalProcess,
    Probe,
    RefKind,
    container_ports,
    local_process,
    mount_map,
    needs_image_files,
    nested_links,
    volume_files,
)
from kaito.local._paths import PODS_DIR
from kaito.local._process import process_start_time, signal_process
from kaito.local._state import PodProcess
from kaito.operator import Informer
from kaito.provisioners import WORKSPACE_LABEL
from kaito.provisioners.local import LOCAL_NODE_LABEL
from kaito.runtimes import ADAPTERS_DIR

_log = logging.getLogger("kaito.local.kubelet")

FIELD_MANAGER = "kaito-local-kubelet"
LOG_FILE = "pod.log"
PUBLISH_ATTEMPTS = 3
TERMINATION_LINES = 80
TERMINATION_BYTES = 2048
DEFAULT_ADAPTERS_VOLUME = "kaito-adapters"
"""The host directory that stands for the adapters directory when the pod mounts nothing
there (a workspace without adapters): the server finds it, empty."""


@attrs.frozen
class KubeletSettings:
    """How the local kubelet runs pods; the defaults suit `kaito up`."""

    python: str = sys.executable
    """The interpreter a container's `python` runs as."""
    restart_base: float = 1.0
    restart_cap: float = 30.0
    reset_after: float = 60.0
    start_probe_interval: float = 0.25
    probe_period_cap: float = 5.0
    stop_timeout: float = 10.0
    node_label: str = LOCAL_NODE_LABEL
    base_env: Mapping[str, str] | None = None
    """The environment processes start from (None: this process's)."""


@attrs.frozen
class Endpoint:
    """A pod's processes as a Service backend."""

    namespace: str
    pod: str
    labels: Mapping[str, str]
    ports: Mapping[int, int]
    """Container port -> port on 127.0.0.1."""
    named_ports: Mapping[str, int]
    """Port name -> container port."""
    ready: bool


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- node selection ------------------------------------------------------------------------


def _expression_matches(expr: Mapping[str, Any], value: str | None) -> bool:
    operator = expr.get("operator")
    values = [str(v) for v in expr.get("values") or []]
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and values:
        try:
            number, bound = int(value), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def node_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether `node` satisfies the pod's nodeSelector and required node affinity."""
    spec = pod.get("spec") or {}
    labels = _meta(node).get("labels") or {}
    name = str(_meta(node).get("name", ""))
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    for term in terms:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if all(_expression_matches(e, labels.get(str(e.get("key")))) for e in exprs) and all(
            _expression_matches(f, name if f.get("key") == "metadata.name" else None)
            for f in fields
        ):
            return True
    return False


# -- one container ---------------------------------------------------------------------------


@attrs.define
class _Container:
    """The kubelet's view of one container of a pod."""

    spec: Mapping[str, Any]
    init: bool
    state: dict[str, Any] = attrs.field(
        factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = attrs.field(factory=dict)
    ready: bool = False
    started: bool = False
    restarts: int = 0
    process: asyncio.subprocess.Process | None = None
    process_start: str | None = None
    log_offset: int = 0
    """Where this run's output starts in the pod's log file."""

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": str(self.spec.get("image", "")),
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.process is not None:
            out["containerID"] = f"local://{self.process.pid}"
        return out


# -- one pod -----------------------------------------------------------------------------------


class _PodWorker:
    """Runs one pod (one uid) until it is stopped."""

    def __init__(self, kubelet: LocalKubelet, pod: RawObject) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.namespace, self.name = _key(pod)
        self.uid = str(_meta(pod).get("uid", ""))
        spec = pod.get("spec") or {}
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        self.inits = [_Container(c, True) for c in spec.get("initContainers") or []]
        self.containers = [_Container(c, False) for c in spec.get("containers") or []]
        ports: list[int] = []
        for c in [*self.inits, *self.containers]:
            ports.extend(container_ports(c.spec))
        self.ports = {p: free_port() for p in dict.fromkeys(ports)}
        self.directory = kubelet.pod_dir(self.namespace, self.name)
        self.log_path = self.directory / LOG_FILE
        self.start_time = _now()
        self.initialized = not self.inits
        self._conditions: dict[str, tuple[str, str]] = {}
        self._written: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False
        self.task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- view -------------------------------------------------------------------------------

    @property
    def labels(self) -> Mapping[str, str]:
        return dict(_meta(self.pod).get("labels") or {})

    @property
    def ready(self) -> bool:
        return self.initialized and all(c.ready for c in self.containers)

    def endpoint(self) -> Endpoint:
        named: dict[str, int] = {}
        for c in self.containers:
            for port in c.spec.get("ports") or []:
                if port.get("name") and isinstance(port.get("containerPort"), int):
                    named[str(port["name"])] = int(port["containerPort"])
        return Endpoint(self.namespace, self.name, self.labels, self.ports, named, self.ready)

    def processes(self) -> list[PodProcess]:
        workspace = self.labels.get(WORKSPACE_LABEL, "")
        return [
            PodProcess(
                namespace=self.namespace,
                pod=self.name,
                container=c.name,
                workspace=workspace,
                pid=c.process.pid,
                start=c.process_start,
                ports={str(k): v for k, v in self.ports.items()},
                log=str(self.log_path),
            )
            for c in [*self.inits, *self.containers]
            if c.process is not None and c.process.returncode is None
        ]

    # -- status -----------------------------------------------------------------------------

    def _condition(self, type_: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self._conditions.get(type_)
        if previous is None or previous[0] != status:
            self._conditions[type_] = (status, _now())
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self._conditions[type_][1],
        }
        if not ok and reason:
            cond["reason"] = reason
        return cond

    def _phase(self) -> str:
        if (
            self.restart_policy != "Always"
            and self.containers
            and all("terminated" in c.state for c in self.containers)
        ):
            failed = any(c.state["terminated"].get("exitCode") != 0 for c in self.containers)
            return "Failed" if failed else "Succeeded"
        if self.initialized and any("running" in c.state or c.restarts for c in self.containers):
            return "Running"
        return "Pending"

    def status(self) -> dict[str, Any]:
        ready = self.ready
        waiting = "ContainersNotReady" if self.initialized else "PodNotInitialized"
        status: dict[str, Any] = {
            "phase": self._phase(),
            "conditions": [
                self._condition("PodReadyToStartContainers", True),
                self._condition("Initialized", self.initialized, "ContainersNotInitialized"),
                self._condition("Ready", ready, waiting),
                self._condition("ContainersReady", ready, waiting),
                self._condition("PodScheduled", True),
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        return status

    async def publish(self) -> None:
        """Write the pod's status if it changed since the last write (a failed write is tried
        again a few times: nothing else would write it until the next change)."""
        async with self._lock:
            for attempt in range(PUBLISH_ATTEMPTS):
                if self._stopping:
                    return
                status = self.status()
                if status == self._written:
                    return
                try:
                    await self.kubelet.client.patch_status(
                        POD,
                        self.name,
                        {"status": status},
                        namespace=self.namespace,
                        field_manager=FIELD_MANAGER,
                    )
                except NotFound:
                    return
                except KubeError as exc:
                    _log.warning("cannot write the status of pod %s: %s", self.name, exc)
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                self._written = status
                break
        self.kubelet.changed()

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.directory / "volumes", ignore_errors=True)
        await self.publish()
        for container in self.inits:
            if not await self._run_init(container):
                return
        self.initialized = True
        await self.publish()
        await asyncio.gather(*(self._run_main(c) for c in self.containers))

    def _backoff(self, failures: int) -> float:
        s = self.kubelet.settings
        return float(min(s.restart_base * 2 ** max(failures - 1, 0), s.restart_cap))

    async def _prepare(self, container: _Container) -> LocalProcess:
        """`_plan`, with what it did not foresee reported as the container's waiting reason
        (the pod would otherwise hang with no word of why)."""
        try:
            return await self._plan(container)
        except CannotRun:
            raise
        except Exception as exc:
            _log.exception("cannot prepare container %s of pod %s", container.name, self.name)
            raise CannotRun(
                "CreateContainerConfigError",
                f"the local kubelet cannot prepare container {container.name}: {exc}",
            ) from exc

    async def _plan(self, container: _Container) -> LocalProcess:
        if container.init and needs_image_files(self.pod, container.spec):
            raise CannotRun(
                "ErrImagePull",
                f"the local mode cannot fetch the files of image {container.spec.get('image')} "
                f"(init container {container.name}): it runs no images; adapters packaged as "
                "images need a cluster",
            )
        refs = await self.kubelet.references(self.pod)
        volumes = self._volumes(refs)
        adapters = self.directory / "volumes" / DEFAULT_ADAPTERS_VOLUME
        adapters.mkdir(parents=True, exist_ok=True)
        mounts = {ADAPTERS_DIR: str(adapters), **mount_map(container.spec, volumes)}
        for link, target in nested_links(mounts):
            try:
                _link(Path(link), Path(target))
            except OSError as exc:
                raise CannotRun(
                    "CreateContainerConfigError",
                    f"cannot show volume {target} at {link}: {exc.strerror or exc}",
                ) from None
        return local_process(
            self.pod,
            container.spec,
            volumes=volumes,
            ports=self.ports,
            refs=refs,
            python=self.kubelet.settings.python,
            base_env=self.kubelet.settings.base_env,
            default_mounts={ADAPTERS_DIR: adapters},
        )

    def _volumes(self, refs: Mapping[tuple[RefKind, str], Mapping[str, str]]) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = str(volume.get("name"))
            files = volume_files(volume, refs)
            if files is None:
                out[name] = Path(str(volume["hostPath"].get("path")))
                continue
            target = self.directory / "volumes" / name
            target.mkdir(parents=True, exist_ok=True)
            for relative, content in files.items():
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            out[name] = target
        return out

    async def _spawn(self, container: _Container, plan: LocalProcess) -> asyncio.subprocess.Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            header = (
                f"--- {_now()} {self.name}/{container.name} starts"
                f" (restart {container.restarts}): {' '.join(plan.argv)}\n"
            )
            log.write(header.encode())
            log.flush()
            container.log_offset = log.tell()
            process = await asyncio.create_subprocess_exec(
                *plan.argv,
                env=dict(plan.env),
                cwd=plan.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        container.process = process
        container.process_start = process_start_time(process.pid)
        return process

    async def _cannot_run(self, container: _Container, exc: CannotRun, failures: int) -> None:
        container.state = {"waiting": {"reason": exc.reason, "message": exc.message}}
        container.ready = False
        await self.publish()
        await asyncio.sleep(self._backoff(failures))

    async def _run_init(self, container: _Container) -> bool:
        """Run an init container to success; False when the pod failed for good."""
        failures = 0
        while not self._stopping:
            try:
                plan = await self._prepare(container)
            except CannotRun as exc:
                failures += 1
                await self._cannot_run(container, exc, failures)
                continue
            process = await self._spawn(container, plan)
            started = _now()
            container.state = {"running": {"startedAt": started}}
            await self.publish()
            code = await process.wait()
            self._reap(process)
            terminated = self._terminated(container, code, started)
            if code == 0:
                container.state = terminated
                container.ready = True
                return True
            if self.restart_policy == "Never":
                container.state = terminated
                await self.publish()
                return False
            failures += 1
            await self._restart_later(container, terminated, failures)
        return False

    async def _run_main(self, container: _Container) -> None:
        failures = 0
        while not self._stopping:
            try:
                plan = await self._prepare(container)
            except CannotRun as exc:
                failures += 1
                await self._cannot_run(container, exc, failures)
                continue
            process = await self._spawn(container, plan)
            began = time.monotonic()
            started = _now()
            container.state = {"running": {"startedAt": started}}
            container.ready = False
            container.started = False
            await self.publish()
            probing = asyncio.create_task(self._probe(container, plan, process))
            try:
                code = await process.wait()
            finally:
                probing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probing
            self._reap(process)
            if self.stopping:
                return
            terminated = self._terminated(container, code, started)
            container.ready = False
            policy = self.restart_policy
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                container.state = terminated
                await self.publish()
                return
            failures = (
                1
                if time.monotonic() - began >= self.kubelet.settings.reset_after
                else (failures + 1)
            )
            await self._restart_later(container, terminated, failures)

    async def _restart_later(
        self, container: _Container, terminated: dict[str, Any], failures: int
    ) -> None:
        """Record the ended run, show CrashLoopBackOff, and wait out the back-off."""
        delay = self._backoff(failures)
        container.restarts += 1
        container.last_state = terminated
        container.state = _crash_waiting(delay, container.name, self.name)
        await self.publish()
        await asyncio.sleep(delay)

    def _terminated(self, container: _Container, code: int, started: str) -> dict[str, Any]:
        """The terminated state; with terminationMessagePolicy FallbackToLogsOnError, a failed
        container's message is the tail of what it wrote (as a kubelet does, at most
        `TERMINATION_LINES` lines and `TERMINATION_BYTES` bytes). The containers of a pod share
        one log file here, so a tail can hold a sibling's lines."""
        state = _terminated(code, started)
        if code != 0 and container.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = log_tail(self.log_path, container.log_offset)
            if message:
                state["terminated"]["message"] = message
        return state

    def _reap(self, process: asyncio.subprocess.Process) -> None:
        # The main process is gone; whatever it started in its group goes with it.
        signal_process(process.pid, signal.SIGKILL, group=True)
        self.kubelet.changed()

    # -- probes -----------------------------------------------------------------------------

    async def _probe(
        self, container: _Container, plan: LocalProcess, process: asyncio.subprocess.Process
    ) -> None:
        s = self.kubelet.settings
        check = self.kubelet.check
        began = time.monotonic()
        startup = plan.startup
        if startup is not None:
            budget = startup.initial_delay + startup.period * startup.failure_threshold
            await asyncio.sleep(startup.initial_delay)
            while not await check(startup, plan):
                if time.monotonic() - began > budget:
                    _log.warning("startup probe of %s/%s failed", self.name, container.name)
                    await self._kill(process)
                    return
                await asyncio.sleep(s.start_probe_interval)
        container.started = True
        readiness, liveness = plan.readiness, plan.liveness
        if readiness is None:
            container.ready = True
            await self.publish()
        elif readiness.initial_delay:
            await asyncio.sleep(max(0.0, readiness.initial_delay - (time.monotonic() - began)))
        successes = failures = live_failures = 0
        next_liveness = time.monotonic() + (liveness.initial_delay if liveness else 0.0)
        while True:
            if readiness is not None:
                if await check(readiness, plan):
                    successes, failures = successes + 1, 0
                    if not container.ready and successes >= readiness.success_threshold:
                        container.ready = True
                        await self.publish()
                else:
                    successes, failures = 0, failures + 1
                    if container.ready and failures >= readiness.failure_threshold:
                        container.ready = False
                        await self.publish()
            if liveness is not None and time.monotonic() >= next_liveness:
                next_liveness = time.monotonic() + liveness.period
                if await check(liveness, plan):
                    live_failures = 0
                else:
                    live_failures += 1
                    if live_failures >= liveness.failure_threshold:
                        _log.warning("liveness probe of %s/%s failed", self.name, container.name)
                        await self._kill(process)
                        return
            if readiness is not None and not container.ready:
                period = s.start_probe_interval
            elif readiness is not None:
                period = min(readiness.period, s.probe_period_cap)
            else:
                period = liveness.period if liveness is not None else 3600.0
            await asyncio.sleep(period)

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        signal_process(process.pid, signal.SIGTERM, group=True)
        try:
            await asyncio.wait_for(process.wait(), self.kubelet.settings.stop_timeout)
        except TimeoutError:
            signal_process(process.pid, signal.SIGKILL, group=True)

    # -- stopping ---------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop every process of the pod and the worker itself."""
        self._stopping = True
        grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        timeout = self.kubelet.settings.stop_timeout
        if isinstance(grace, int) and grace >= 0:
            timeout = min(timeout, float(grace))
        running = [
            c.process
            for c in [*self.inits, *self.containers]
            if c.process is not None and c.process.returncode is None
        ]
        for process in running:
            signal_process(process.pid, signal.SIGTERM, group=True)
        if running:
            _, pending = await asyncio.wait(
                [asyncio.create_task(p.wait()) for p in running], timeout=timeout
            )
            for process in running:
                signal_process(process.pid, signal.SIGKILL, group=True)
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self.kubelet.changed()


def _terminated(code: int, started: str) -> dict[str, Any]:
    reason = "Completed" if code == 0 else ("Error" if code > 0 else "Killed")
    return {
        "terminated": {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": _now(),
        }
    }


def log_tail(path: Path, offset: int = 0) -> str:
    """The end of `path` from `offset` on: its last `TERMINATION_LINES` lines, cut to the last
    `TERMINATION_BYTES` bytes (a kubelet's limits for a message taken from the log)."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, 2)
            start = max(offset, size - TERMINATION_BYTES)
            cut = start > offset
            if cut:
                log.seek(start - 1)
                cut = log.read(1) != b"\n"
            log.seek(start)
            data = log.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if cut and len(lines) > 1:
        lines = lines[1:]  # the first line was cut in the middle
    return "\n".join(lines[-TERMINATION_LINES:]).strip()


def _crash_waiting(delay: float, container: str, pod: str) -> dict[str, Any]:
    return {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off {delay:g}s restarting failed container={container} pod={pod}",
        }
    }


# -- the kubelet -------------------------------------------------------------------------------


Checker = Callable[[Probe, LocalProcess], Awaitable[bool]]


class LocalKubelet:
    """Binds and runs the pods of this machine's nodes: `async with LocalKubelet(client, dir)`.

    `on_change` is called (synchronously) whenever the set of processes, their ports or their
    readiness may have changed; the local mode rewrites its state file then.
    """

    def __init__(
        self,
        client: Client,
        directory: Path,
        settings: KubeletSettings | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.directory = Path(directory)
        self.settings = settings or KubeletSettings()
        self._on_change = on_change
        self._workers: dict[str, _PodWorker] = {}
        self._binding: set[str] = set()
        self._unschedulable: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: Any = None
        self.pods = Informer(client, POD, self._on_pod)
        self.nodes = Informer(client, NODE, self._on_node, label_selector=self.settings.node_label)
        self._watches: list[asyncio.Task[None]] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow nodes and pods; returns once both are listed."""
        self._watches = [
            asyncio.create_task(self.nodes.run(), name="local-kubelet nodes"),
            asyncio.create_task(self.pods.run(), name="local-kubelet pods"),
        ]
        await asyncio.gather(self.nodes.synced.wait(), self.pods.synced.wait())

    async def stop(self) -> None:
        """Stop every pod (their processes end) and stop following the cluster."""
        for task in self._watches:
            task.cancel()
        for task in self._watches:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watches = []
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> LocalKubelet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what others read -------------------------------------------------------------------

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.directory / PODS_DIR / f"{namespace}_{name}"

    def endpoints(self) -> list[Endpoint]:
        return [w.endpoint() for w in self._workers.values()]

    def processes(self) -> list[PodProcess]:
        return [p for w in self._workers.values() for p in w.processes()]

    def changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    # -- events -----------------------------------------------------------------------------

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _local_nodes(self) -> list[RawObject]:
        return sorted(
            (
                n
                for n in self.nodes.objects()
                if not _meta(n).get("deletionTimestamp") and _node_ready(n)
            ),
            key=lambda n: str(_meta(n).get("name")),
        )

    def _on_node(self, kind: Any, event: str, node: RawObject) -> None:
        for pod in self.pods.objects():
            self._consider(pod)

    def _on_pod(self, kind: Any, event: str, pod: RawObject) -> None:
        uid = str(_meta(pod).get("uid", ""))
        if event == "DELETED":
            self._stop_worker(uid)
            self._unschedulable.discard(uid)
            return
        self._consider(pod)

    def _consider(self, pod: RawObject) -> None:
        meta = _meta(pod)
        uid = str(meta.get("uid", ""))
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        node = spec.get("nodeName")
        if meta.get("deletionTimestamp"):
            self._stop_worker(uid)
            return
        if not node:
            if status.get("phase") in ("Succeeded", "Failed") or uid in self._binding:
                return
            if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
                return
            self._binding.add(uid)
            self._spawn_task(self._bind(pod))
            return
        worker = self._workers.get(uid)
        if worker is not None:
            worker.pod = pod
            return
        if not any(_meta(n).get("name") == node for n in self.nodes.objects()):
            return  # not one of this machine's nodes
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        worker = _PodWorker(self, pod)
        self._workers[uid] = worker
        worker.task = asyncio.ensure_future(self._guard(worker))
        self.changed()

    async def _guard(self, worker: _PodWorker) -> None:
        try:
            await worker.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("the local kubelet failed running pod %s", worker.name)

    def _stop_worker(self, uid: str) -> None:
        worker = self._workers.pop(uid, None)
        if worker is not None:
            self._spawn_task(worker.stop())

    async def _bind(self, pod: RawObject) -> None:
        uid = str(_meta(pod).get("uid", ""))
        namespace, name = _key(pod)
        try:
            workspace = (_meta(pod).get("labels") or {}).get(WORKSPACE_LABEL)
            candidates = [n for n in self._local_nodes() if node_matches(pod, n)]
            candidates.sort(
                key=lambda n: (_meta(n).get("labels") or {}).get(WORKSPACE_LABEL) != workspace
            )
            if not candidates:
                if uid not in self._unschedulable and self._local_nodes():
                    self._unschedulable.add(uid)
                    await self._unschedulable_status(pod)
                return
            self._unschedulable.discard(uid)
            target = str(_meta(candidates[0]).get("name"))
            await self.client.patch(
                POD,
                name,
                {"spec": {"nodeName": target}},
                namespace=namespace,
                field_manager=FIELD_MANAGER,
            )
        except NotFound:
            return
        except KubeError as exc:
            _log.warning("cannot bind pod %s: %s", name, exc)
        finally:
            self._binding.discard(uid)

    async def _unschedulable_status(self, pod: RawObject) -> None:
        namespace, name = _key(pod)
        nodes = ", ".join(str(_meta(n).get("name")) for n in self._local_nodes())
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": f"0/{len(self._local_nodes())} nodes are available: no local node "
            f"({nodes}) matches the pod's node selector or affinity",
            "lastTransitionTime": _now(),
        }
        with contextlib.suppress(NotFound):
            await self.client.patch_status(
                POD,
                name,
                {"status": {"phase": "Pending", "conditions": [condition]}},
                namespace=namespace,
                field_manager=FIELD_MANAGER,
            )

    # -- references and probes --------------------------------------------------------------

    async def references(self, pod: RawObject) -> dict[tuple[RefKind, str], Mapping[str, str]]:
        """The data of every ConfigMap and Secret the pod's volumes and environment name."""
        namespace, _ = _key(pod)
        wanted: set[tuple[RefKind, str]] = set()
        spec = pod.get("spec") or {}
        for volume in spec.get("volumes") or []:
            if isinstance(volume.get("configMap"), Mapping):
                wanted.add(("configmap", str(volume["configMap"].get("name"))))
            if isinstance(volume.get("secret"), Mapping):
                wanted.add(("secret", str(volume["secret"].get("secretName"))))
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            wanted.update(_env_refs(container))
        found: dict[tuple[RefKind, str], Mapping[str, str]] = {}
        for kind, name in wanted:
            try:
                obj = await self.client.get(
                    CONFIG_MAP if kind == "configmap" else SECRET, name, namespace=namespace
                )
            except NotFound:
                continue
            found[(kind, name)] = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
        return found

    async def check(self, probe: Probe, plan: LocalProcess) -> bool:
        """One probe attempt."""
        try:
            if probe.kind == "http":
                if probe.port is None:
                    return False
                return await self._http_ok(probe)
            if probe.kind == "tcp":
                if probe.port is None:
                    return False
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", probe.port), probe.timeout
                )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return True
            process = await asyncio.create_subprocess_exec(
                *probe.command,
                env=dict(plan.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(process.wait(), probe.timeout) == 0
            except TimeoutError:
                process.kill()
                await process.wait()
                return False
        except (OSError, TimeoutError):
            return False

    async def _http_ok(self, probe: Probe) -> bool:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(
                probe.url, timeout=aiohttp.ClientTimeout(total=probe.timeout)
            ) as response:
                await response.read()
                ok: bool = 200 <= response.status < 400
                return ok
        except (aiohttp.ClientError, TimeoutError):
            return False


def _link(link: Path, target: Path) -> None:
    """A symbolic link `link` -> `target`, replacing a stale link; an existing file or
    directory at `link` is left as it is (the outer volume has its own entry there)."""
    if link.is_symlink():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    elif link.exists():
        _log.warning("cannot show %s at %s: something is there already", target, link)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def _node_ready(node: Mapping[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _env_refs(container: Mapping[str, Any]) -> Iterable[tuple[RefKind, str]]:
    for source in container.get("envFrom") or []:
        if isinstance(source.get("configMapRef"), Mapping):
            yield "configmap", str(source["configMapRef"].get("name"))
        if isinstance(source.get("secretRef"), Mapping):
            yield "secret", str(source["secretRef"].get("name"))
    for item in container.get("env") or []:
        source = item.get("valueFrom") or {}
        if isinstance(source.get("configMapKeyRef"), Mapping):
            yield "configmap", str(source["configMapKeyRef"].get("name"))
        if isinstance(source.get("secretKeyRef"), Mapping):
            yield "secret", str(source["secretKeyRef"].get("name"))
