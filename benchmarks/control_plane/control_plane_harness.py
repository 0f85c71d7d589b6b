"""The control-plane benchmark's harness: kaito's operator driving N workspaces to ready.

Issue #4 asks whether the operator holds up at 100 and 1,000 workspaces, and "holds up" has
five measurable parts: how long N workspaces take from apply to WorkspaceReady, how many API
requests (and writes) each workspace costs, whether a converged fleet costs zero writes when the
operator starts over, how fast the operator reacts once a workspace's nodes are Ready
(watch-driven, not polled), and how much memory the operator needs for it.

The layout keeps every one of those figures the operator's own:

- The operator runs as `kaito operator run --kubeconfig ... --provisioner fake
  --no-leader-election` in a child process, exactly as a user starts it, so its peak RSS
  (`VmHWM` in /proc) and CPU time are its alone.
- The cluster lives in this process: kaito's API-server emulator with kaito's CRDs, and the
  lifecycle simulators (StatefulSet controller, pod scheduler and kubelet, Karpenter) with
  their default short delays. The operator is given a second HTTP listener on the *same*
  store with a request log of its own, so the requests it makes are counted apart from the
  simulators' and the benchmark's without any sampling or guessing.
- Times come from watches opened directly on the store in this process: an event is offered
  to a store watcher synchronously when the object is written, and the recorder stamps it with
  `time.perf_counter()` when it takes it (the event loop's lag, a few milliseconds under load,
  is the only error, and it affects both ends of a latency alike).

One count runs like this: start the cluster and the operator and wait until it has listed
and opened its watches; apply N workspaces (the seed's phi-3 inference workspace, each with a
label selector of its own) with a few concurrent writers; wait until every workspace reports
WorkspaceReady=True; wait until the operator is quiet (empty work queue, nothing in flight, no
request for a while). Then stop it, start a fresh operator against the converged cluster and
count what its initial lists and its pass over every workspace cost (writes should be zero).
Last, apply a few more workspaces one at a time, each once the previous one is ready.

The "nodes Ready to StatefulSet created" latency is taken per workspace from the moment its
last node (and, with Karpenter, NodeClaim) turned Ready to the moment its StatefulSet appeared.
For the N applied at once it includes waiting in the work queue behind the others (a burst
measures throughput as much as reaction); the workspaces applied one at a time give the
reaction of an operator without a backlog ("paced"). With the `fake` provisioner the nodes are
created Ready inside the reconcile that then creates the StatefulSet, so the latency is the
rest of that pass; with `karpenter` the nodes become Ready later (the simulator's delays) and
the StatefulSet follows a watch event, the path upstream covers by polling every few seconds.

Every wait is bounded; a run that does not converge fails with what it saw instead of hanging.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import math
import os
import platform
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import attrs
import yaml
from aiohttp import web

from kaito.kube import (
    NAMESPACE,
    NODE,
    NODE_CLAIM,
    STATEFUL_SET,
    WORKSPACE,
    KubeClient,
    RawObject,
    ResourceKind,
)
from kaito.kube.emulated import EmulatedCluster
from kaito.kube.emulator import Faults, RequestLog, Store, Watcher
from kaito.kube.emulator import WatchEvent as StoreEvent

# The emulator's HTTP application has no public constructor of its own; the benchmark needs a
# second listener on the same store (see the module docstring), so it builds one here.
from kaito.kube.emulator._server import ApiServer
from kaito.operator import CHILD_KINDS, workspace_key
from kaito.provisioners import WORKSPACE_LABEL
from kaito.testing import kaito_cluster

REPO: Final = Path(__file__).resolve().parents[2]
SEED_WORKSPACE: Final = REPO / "tests" / "data" / "seed" / "phi-3-inference.yaml"

BENCH_NS: Final = "bench"
PROVISIONERS: Final = ("fake", "karpenter")

# The seed workspace is written as v1alpha1 and applied unchanged through that version.
WORKSPACE_V1ALPHA1: Final = attrs.evolve(WORKSPACE, version="v1alpha1")

WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})

_OPERATOR_START_TIMEOUT: Final = 60.0
_OPERATOR_STOP_TIMEOUT: Final = 40.0
_POLL: Final = 0.1
_WATCHED_KINDS: Final = 1 + len(CHILD_KINDS)
"""Watches the operator opens: Workspaces and every child kind (all served by the emulator)."""
_PROBE_GAP: Final = 0.2


@attrs.frozen
class Settings:
    """What one benchmark run does; every wait below is bounded by these."""

    counts: tuple[int, ...]
    """Workspaces per measurement; each count gets a fresh cluster and operator."""
    provisioner: str = attrs.field(default="fake")
    operator_concurrency: int = 4
    """`--concurrency` of the operator (its default)."""
    apply_concurrency: int = 16
    """Writers applying the workspaces at once (a `kubectl apply -f dir/` is sequential;
    several writers make the burst sharper)."""
    log_level: str = "info"
    """`--log-level` of the operator: info, as deployed, logs one line per reconcile."""
    quiet: float = 1.0
    """Seconds without a request from the operator before it counts as settled."""
    converge_base: float = 60.0
    converge_per_workspace: float = 0.5
    """The wait for WorkspaceReady, and for the operator to settle after it, each bounded by
    `converge_base + converge_per_workspace * count` seconds."""
    resync: bool = True
    """Restart the operator after convergence and count the writes of its first pass."""
    probes: int = 20
    """Workspaces applied one at a time after convergence (the latency without backlog)."""

    @provisioner.validator
    def _known(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in PROVISIONERS:
            raise ValueError(f"provisioner must be one of {', '.join(PROVISIONERS)}")

    def __attrs_post_init__(self) -> None:
        if not self.counts or min(self.counts) < 1:
            raise ValueError("counts must be positive")
        if self.operator_concurrency < 1 or self.apply_concurrency < 1:
            raise ValueError("concurrencies must be at least 1")
        if self.probes < 0:
            raise ValueError("probes must not be negative")

    def converge_timeout(self, count: int) -> float:
        return self.converge_base + self.converge_per_workspace * count


FULL: Final = Settings(counts=(100, 1000))
QUICK: Final = Settings(counts=(20,), quiet=0.5, probes=5)


@attrs.define
class Row:
    """One count's figures. Per-workspace figures divide by the count."""

    count: int
    provisioner: str
    wall_s: float
    """First apply to the last WorkspaceReady=True."""
    apply_s: float
    """How long applying the N workspaces took (the burst the operator had to absorb)."""
    ready_p50_s: float
    ready_p99_s: float
    """Per workspace: its apply returned to its WorkspaceReady=True."""
    requests_per_ws: float
    """Requests of the operator from the first apply until it settled."""
    writes_per_ws: float
    requests_at_ready_per_ws: float
    """The same, counted at the last WorkspaceReady (the rest is the trailing no-op passes)."""
    writes_at_ready_per_ws: float
    requests_by_verb: dict[str, int]
    writes_by_resource: dict[str, int]
    reads_by_resource: dict[str, int]
    reconciles_per_ws: float
    reconcile_results: dict[str, int]
    settled: bool
    """False when the operator was still busy when the wait ended (figures taken then)."""
    latency_n: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    """Nodes Ready (last node or NodeClaim of the workspace) to StatefulSet created, for the
    N workspaces applied at once (so it includes waiting behind the others in the queue)."""
    peak_rss_mib: float | None
    """VmHWM of the operator process (None where there is no /proc)."""
    operator_cpu_s: float | None
    """User and system CPU seconds of the operator from the first apply until it settled."""
    watch_lists: int
    """Full lists the operator's watches made after their first (relists: 410 Gone, errors)."""
    cluster_cpu_s: float
    """CPU seconds of this process (emulator, simulators, recorder) over the same span."""
    cluster_requests_per_ws: float
    """Requests of the simulators and the benchmark itself (the applies), per workspace."""
    resync_s: float | None = None
    """Restarted operator: process start until every workspace was reconciled and it settled."""
    resync_requests_per_ws: float | None = None
    resync_writes_per_ws: float | None = None
    resync_writes_by_resource: dict[str, int] | None = None
    resync_reconciles_per_ws: float | None = None
    resync_peak_rss_mib: float | None = None
    resync_operator_cpu_s: float | None = None
    """CPU seconds of the restarted operator from `/readyz` 200 (caches listed) to settled."""
    resync_cluster_cpu_s: float | None = None
    """CPU seconds of this process from the restart to settled."""
    paced_n: int = 0
    paced_p50_ms: float = math.nan
    paced_p99_ms: float = math.nan
    """Nodes Ready to StatefulSet created for workspaces applied one at a time after the N
    converged: the operator's reaction without a backlog."""
    paced_ready_p50_s: float = math.nan
    """Apply to WorkspaceReady of those workspaces."""

    def to_json(self) -> dict[str, Any]:
        # NaN is not JSON: a figure that could not be measured is null.
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in attrs.asdict(self).items()
        }


@attrs.define
class BenchResult:
    rows: list[Row]
    settings: Settings
    started: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "control_plane",
            "started": self.started,
            "seconds": round(self.seconds, 2),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": attrs.asdict(self.settings),
            "rows": [row.to_json() for row in self.rows],
        }


# --- small measuring tools --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _proc_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields follow the last ")".
    return text[text.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process, from /proc (None where there is no /proc)."""
    fields = _proc_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set (`VmHWM`) in MiB, from /proc (None without /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text samples as {"name{labels}": value} (comments skipped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            samples[name + (labels or "")] = float(value)
        except ValueError:
            continue
    return samples


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """The sum of every sample of one metric, whatever its labels."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def _label_of(sample: str, label: str) -> str:
    match = re.search(label + r'="([^"]*)"', sample)
    return match.group(1) if match else ""


def free_port() -> int:
    """A port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class RequestCounts:
    """A snapshot of a request log, split the ways the report needs."""

    total: int
    by_verb: dict[str, int]
    writes_by_resource: dict[str, int]
    reads_by_resource: dict[str, int]

    @property
    def writes(self) -> int:
        return sum(self.writes_by_resource.values())

    @classmethod
    def of(cls, log: RequestLog) -> RequestCounts:
        by_verb: collections.Counter[str] = collections.Counter()
        writes: collections.Counter[str] = collections.Counter()
        reads: collections.Counter[str] = collections.Counter()
        for entry in log.entries:
            by_verb[entry.verb] += 1
            resource = f"{entry.verb} {entry.resource}"
            (writes if entry.verb in WRITE_VERBS else reads)[resource] += 1
        return cls(
            total=len(log.entries),
            by_verb=dict(sorted(by_verb.items())),
            writes_by_resource=dict(sorted(writes.items())),
            reads_by_resource=dict(sorted(reads.items())),
        )


# --- the cluster side -------------------------------------------------------------------------


class OperatorListener:
    """A second HTTP listener on the emulator's store, with a request log of its own.

    The operator is pointed at it, so `requests` holds the operator's requests and nothing else.
    Stopping it ends every watch of the store (the emulator's shutdown does that), so it stops
    after the operator and before the cluster.
    """

    def __init__(self, store: Store) -> None:
        self.requests = RequestLog()
        self.port = 0
        self.server = ApiServer(
            store, Faults(), self.requests, address=lambda: f"127.0.0.1:{self.port}"
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(
            self.server.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await self.server.shutdown()
            await runner.cleanup()

    def write_kubeconfig(self, path: Path) -> Path:
        name = "kaito-bench-operator"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": "kaito-emulator-token"}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": BENCH_NS}}
            ],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def _condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


@attrs.define
class Recorder:
    """Watches on the store itself that stamp when nodes, NodeClaims, StatefulSets and
    workspaces reached the states the benchmark measures (perf_counter seconds)."""

    store: Store
    nodes_ready: dict[str, dict[str, float]] = attrs.field(factory=dict)
    """Workspace key -> node or NodeClaim name -> when it first turned Ready."""
    statefulset_created: dict[str, float] = attrs.field(factory=dict)
    nodes_ready_at_statefulset: dict[str, float] = attrs.field(factory=dict)
    """Workspace key -> the last Ready time among its nodes when its StatefulSet appeared."""
    workspace_ready: dict[str, float] = attrs.field(factory=dict)
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    _watchers: list[Watcher] = attrs.field(factory=list)
    _tasks: list[asyncio.Task[None]] = attrs.field(factory=list)

    def start(self, with_nodeclaims: bool) -> None:
        kinds: list[tuple[ResourceKind, str | None, str | None]] = [
            (NODE, None, WORKSPACE_LABEL),
            (STATEFUL_SET, BENCH_NS, WORKSPACE_LABEL),
            (WORKSPACE, BENCH_NS, None),
        ]
        if with_nodeclaims:
            kinds.append((NODE_CLAIM, None, WORKSPACE_LABEL))
        for kind, namespace, selector in kinds:
            watcher, _ = self.store.watch(kind, namespace, label_selector=selector)
            self._watchers.append(watcher)
            self._tasks.append(
                asyncio.create_task(self._follow(kind, watcher), name=f"record {kind.plural}")
            )

    async def stop(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._watchers.clear()
        self._tasks.clear()

    def failed(self) -> BaseException | None:
        """The error of a recording task that ended by itself (None while all run)."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                return task.exception() or RuntimeError(f"{task.get_name()} ended")
        return None

    async def _follow(self, kind: ResourceKind, watcher: Watcher) -> None:
        while True:
            event = await watcher.next_raw()
            if event is None:
                return
            self._record(kind, event, time.perf_counter())

    def _record(self, kind: ResourceKind, event: StoreEvent, now: float) -> None:
        obj = event.object
        key = workspace_key(kind, obj)
        if key is None or event.type == "DELETED":
            return
        if kind in (NODE, NODE_CLAIM):
            if _condition_true(obj, "Ready"):
                name = f"{kind.plural}/{obj['metadata']['name']}"
                self.nodes_ready.setdefault(key, {}).setdefault(name, now)
        elif kind == STATEFUL_SET:
            if key not in self.statefulset_created:
                self.statefulset_created[key] = now
                ready = self.nodes_ready.get(key)
                if ready:
                    self.nodes_ready_at_statefulset[key] = max(ready.values())
        elif (
            kind == WORKSPACE
            and key not in self.workspace_ready
            and _condition_true(obj, "WorkspaceReady")
        ):
            self.workspace_ready[key] = now
            self.changed.set()

    def latencies_ms(self, keys: Iterable[str]) -> list[float]:
        """Nodes Ready to StatefulSet created, for each of `keys` that has both."""
        return [
            (self.statefulset_created[key] - self.nodes_ready_at_statefulset[key]) * 1000
            for key in keys
            if key in self.nodes_ready_at_statefulset
        ]

    async def wait_ready(self, keys: Iterable[str], within: float) -> None:
        """Wait until every key reports WorkspaceReady=True; TimeoutError names the laggards."""
        wanted = set(keys)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not wanted <= self.workspace_ready.keys():
            failure = self.failed()
            if failure is not None:
                raise RuntimeError("a recording watch ended") from failure
            left = deadline - loop.time()
            if left <= 0:
                missing = sorted(wanted - self.workspace_ready.keys())
                raise TimeoutError(
                    f"{len(missing)} of {len(wanted)} workspaces not ready within {within:.0f}s; "
                    f"first: {missing[:3]}; {self._describe(missing[0])}"
                )
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 1.0)):
                    await self.changed.wait()

    def _describe(self, key: str) -> str:
        namespace, _, name = key.partition("/")
        obj = self.store.get("workspaces", namespace, name)
        if obj is None:
            return "it does not exist"
        conditions = (obj.get("status") or {}).get("conditions") or []
        return "conditions: " + "; ".join(
            f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
            for c in conditions
        )


# --- the operator process ---------------------------------------------------------------------


class OperatorProcess:
    """`kaito operator run` in a child process, probes and metrics on one loopback port."""

    def __init__(self, kubeconfig: Path, settings: Settings) -> None:
        self.kubeconfig = kubeconfig
        self.settings = settings
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the operator is not started")
        return self.proc.pid

    def command(self) -> list[str]:
        s = self.settings
        address = f"127.0.0.1:{self.port}"
        return [
            sys.executable,
            "-m",
            "kaito",
            "operator",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--provisioner",
            s.provisioner,
            "--no-leader-election",
            "--concurrency",
            str(s.operator_concurrency),
            "--metrics-addr",
            address,
            "--health-addr",
            address,
            "--log-format",
            "json",
            "--log-level",
            s.log_level,
        ]

    async def start(self) -> None:
        # Only the flags configure it: KAITO_* variables of the caller's shell are left out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAITO_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        self.started_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._drain())
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def _drain(self) -> None:
        # The pipe is read to its end so that logging never blocks the operator.
        assert self.proc is not None
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log_tail.append(line.decode(errors="replace").rstrip())

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            tail = "\n".join(self.log_tail)
            raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{tail}")

    async def _get(self, path: str) -> tuple[int, str]:
        assert self._session is not None
        async with self._session.get(f"http://127.0.0.1:{self.port}{path}") as response:
            return response.status, await response.text()

    async def wait_ready(self, within: float = _OPERATOR_START_TIMEOUT) -> None:
        """Until `/readyz` answers 200: the operator listed every kind it watches."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status, _ = await self._get("/readyz")
                if status == 200:
                    return
            if loop.time() > deadline:
                raise TimeoutError(f"the operator was not ready within {within:.0f}s")
            await asyncio.sleep(_POLL)

    async def metrics(self) -> dict[str, float]:
        self._check_alive()
        status, text = await self._get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(text)

    def peak_rss_mib(self) -> float | None:
        return peak_rss_mib(self.pid)

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.pid)

    async def stop(self) -> None:
        """SIGTERM, as a Deployment's rollout sends it; SIGKILL if it does not end in time."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(_OPERATOR_STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._reader
            self._reader.cancel()


@attrs.frozen
class Settled:
    """The operator's state once it went quiet."""

    metrics: dict[str, float]
    settled: bool
    at: float
    """perf_counter time of the operator's last request (within the poll interval)."""


async def wait_settled(
    operator: OperatorProcess,
    log: RequestLog,
    *,
    quiet: float,
    within: float,
    min_reconciles: int = 0,
) -> Settled:
    """Until the operator has an empty queue, nothing in flight, has made `min_reconciles`
    reconciles, and sent no request for `quiet` seconds (or `within` seconds passed).

    The request log lives in this process and costs nothing to watch; `/metrics` is scraped
    only once the log has been still for `quiet` seconds, because a scrape costs the operator
    CPU in proportion to the workspaces it caches."""
    deadline = time.perf_counter() + within
    last_count = len(log.entries)
    last_change = time.perf_counter()
    while True:
        now = time.perf_counter()
        if len(log.entries) != last_count:
            last_count = len(log.entries)
            last_change = now
        elif now - last_change >= quiet:
            samples = await operator.metrics()
            idle = (
                metric_sum(samples, "kaito_workqueue_depth") == 0
                and metric_sum(samples, "kaito_reconcile_active") == 0
                and metric_sum(samples, "kaito_reconcile_total") >= min_reconciles
            )
            # The scrape is not an API request: the log stays still while the operator idles.
            if idle and len(log.entries) == last_count:
                return Settled(samples, True, last_change)
            last_change = time.perf_counter()  # busy without requesting: wait another spell
        if now > deadline:
            return Settled(await operator.metrics(), False, last_change)
        await asyncio.sleep(_POLL)


# --- the workload -----------------------------------------------------------------------------


def seed_workspace() -> RawObject:
    """The seed's phi-3 inference workspace, as the user wrote it."""
    loaded = yaml.safe_load(SEED_WORKSPACE.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{SEED_WORKSPACE} is not a YAML object")
    return loaded


def workspace_names(count: int, prefix: str = "ws") -> list[str]:
    width = max(4, len(str(count - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(count)]


def bench_workspace(seed: RawObject, name: str) -> RawObject:
    """The seed workspace under a name of its own, selecting nodes labelled for it alone."""
    obj = copy.deepcopy(seed)
    obj["metadata"] = {"name": name, "namespace": BENCH_NS}
    obj["resource"]["labelSelector"] = {"matchLabels": {"apps": name}}
    return obj


async def apply_all(
    client: KubeClient, objects: Sequence[RawObject], concurrency: int
) -> dict[str, float]:
    """Create the workspaces with `concurrency` writers; key -> when its create returned."""
    applied: dict[str, float] = {}
    pending = collections.deque(objects)

    async def writer() -> None:
        while pending:
            obj = pending.popleft()
            created = await client.create(WORKSPACE_V1ALPHA1, obj)
            meta = created["metadata"]
            applied[f"{meta['namespace']}/{meta['name']}"] = time.perf_counter()

    await asyncio.gather(*(writer() for _ in range(min(concurrency, len(objects)))))
    return applied


# --- one count --------------------------------------------------------------------------------


def _per(value: float, count: int) -> float:
    return value / count


def _reconcile_results(samples: Mapping[str, float]) -> dict[str, int]:
    return {
        _label_of(k, "result"): int(v)
        for k, v in samples.items()
        if k.startswith("kaito_reconcile_total{")
    }


def _p(values: Sequence[float], q: float) -> float:
    return percentile(values, q) if values else math.nan


@attrs.define
class _Bench:
    """Everything one count runs on: the cluster, the operator's listener, the recorder."""

    count: int
    settings: Settings
    cluster: EmulatedCluster
    listener: OperatorListener
    recorder: Recorder
    kubeconfig: Path
    seed: RawObject
    say: Callable[[str], None]

    async def start_operator(self) -> OperatorProcess:
        """An operator that has listed and opened its watches (so that neither is counted as
        the cost of the workspaces applied next)."""
        operator = OperatorProcess(self.kubeconfig, self.settings)
        await operator.start()
        try:
            await operator.wait_ready()
            # `/readyz` turns 200 once every kind is listed; the watches follow a moment later.
            log = self.listener.requests
            deadline = time.perf_counter() + _OPERATOR_START_TIMEOUT
            while log.count("watch") < _WATCHED_KINDS:
                if time.perf_counter() > deadline:
                    raise TimeoutError("the operator did not open its watches")
                await asyncio.sleep(_POLL / 10)
        except BaseException:
            await operator.stop()
            raise
        return operator

    async def converge(self, operator: OperatorProcess) -> Row:
        """Apply `count` workspaces at once; measure until the operator settles."""
        count, settings, log = self.count, self.settings, self.listener.requests
        startup = await operator.metrics()
        lists_at_start = metric_sum(startup, "kaito_watch_lists_total")
        cpu_at_start = operator.cpu_seconds()
        cluster_log = self.cluster.emulator.requests
        log.reset()
        cluster_log.reset()
        objects = [bench_workspace(self.seed, name) for name in workspace_names(count)]
        keys = [f"{BENCH_NS}/{o['metadata']['name']}" for o in objects]
        self.say(f"{count} workspaces: applying")
        cluster_cpu = time.process_time()
        first_apply = time.perf_counter()
        applied = await apply_all(self.cluster.client, objects, settings.apply_concurrency)
        apply_s = time.perf_counter() - first_apply
        self.say(f"{count} workspaces: applied in {apply_s:.1f}s; waiting for WorkspaceReady")
        await self.recorder.wait_ready(keys, settings.converge_timeout(count))
        last_ready = max(self.recorder.workspace_ready[k] for k in keys)
        at_ready = RequestCounts.of(log)
        self.say(f"{count} workspaces: ready after {last_ready - first_apply:.1f}s; settling")
        settled = await wait_settled(
            operator, log, quiet=settings.quiet, within=settings.converge_timeout(count)
        )
        converged = RequestCounts.of(log)
        cluster_cpu = time.process_time() - cluster_cpu
        cpu = operator.cpu_seconds()
        per_ready = [self.recorder.workspace_ready[k] - applied[k] for k in keys]
        latencies = self.recorder.latencies_ms(keys)
        return Row(
            count=count,
            provisioner=settings.provisioner,
            wall_s=last_ready - first_apply,
            apply_s=apply_s,
            ready_p50_s=percentile(per_ready, 0.5),
            ready_p99_s=percentile(per_ready, 0.99),
            requests_per_ws=_per(converged.total, count),
            writes_per_ws=_per(converged.writes, count),
            requests_at_ready_per_ws=_per(at_ready.total, count),
            writes_at_ready_per_ws=_per(at_ready.writes, count),
            requests_by_verb=converged.by_verb,
            writes_by_resource=converged.writes_by_resource,
            reads_by_resource=converged.reads_by_resource,
            reconciles_per_ws=_per(metric_sum(settled.metrics, "kaito_reconcile_total"), count),
            reconcile_results=_reconcile_results(settled.metrics),
            settled=settled.settled,
            latency_n=len(latencies),
            latency_p50_ms=_p(latencies, 0.5),
            latency_p99_ms=_p(latencies, 0.99),
            latency_max_ms=max(latencies) if latencies else math.nan,
            peak_rss_mib=operator.peak_rss_mib(),
            operator_cpu_s=None if cpu is None or cpu_at_start is None else cpu - cpu_at_start,
            watch_lists=int(
                metric_sum(settled.metrics, "kaito_watch_lists_total") - lists_at_start
            ),
            cluster_cpu_s=cluster_cpu,
            cluster_requests_per_ws=_per(len(cluster_log.entries), count),
        )

    async def resync(self, row: Row) -> OperatorProcess:
        """Start a fresh operator on the converged cluster; count its first pass."""
        count, log = self.count, self.listener.requests
        self.say(f"{count} workspaces: restarting the operator (resync)")
        log.reset()
        operator = OperatorProcess(self.kubeconfig, self.settings)
        cluster_cpu = time.process_time()
        await operator.start()
        try:
            await operator.wait_ready()
            operator_cpu = operator.cpu_seconds()
            settled = await wait_settled(
                operator,
                log,
                quiet=self.settings.quiet,
                within=_OPERATOR_START_TIMEOUT + self.settings.converge_timeout(count),
                min_reconciles=count,
            )
        except BaseException:
            await operator.stop()
            raise
        counts = RequestCounts.of(log)
        cpu = operator.cpu_seconds()
        row.resync_cluster_cpu_s = time.process_time() - cluster_cpu
        if cpu is not None and operator_cpu is not None:
            row.resync_operator_cpu_s = cpu - operator_cpu
        row.resync_s = settled.at - operator.started_at
        row.resync_requests_per_ws = _per(counts.total, count)
        row.resync_writes_per_ws = _per(counts.writes, count)
        row.resync_writes_by_resource = counts.writes_by_resource
        row.resync_reconciles_per_ws = _per(
            metric_sum(settled.metrics, "kaito_reconcile_total"), count
        )
        row.resync_peak_rss_mib = operator.peak_rss_mib()
        row.settled = row.settled and settled.settled
        return operator

    async def probe(self, row: Row) -> None:
        """Apply workspaces one at a time on the converged fleet, each after the previous one
        is ready: the reaction of an operator that has no backlog."""
        settings = self.settings
        if settings.probes < 1:
            return
        self.say(f"{self.count} workspaces: {settings.probes} paced workspaces")
        keys: list[str] = []
        ready: list[float] = []
        for name in workspace_names(settings.probes, prefix="probe"):
            key = f"{BENCH_NS}/{name}"
            began = time.perf_counter()
            await self.cluster.client.create(WORKSPACE_V1ALPHA1, bench_workspace(self.seed, name))
            await self.recorder.wait_ready([key], settings.converge_base)
            ready.append(self.recorder.workspace_ready[key] - began)
            keys.append(key)
            # Let the pass that follows the workspace's own status write finish first.
            await asyncio.sleep(_PROBE_GAP)
        latencies = self.recorder.latencies_ms(keys)
        row.paced_n = len(latencies)
        row.paced_p50_ms = _p(latencies, 0.5)
        row.paced_p99_ms = _p(latencies, 0.99)
        row.paced_ready_p50_s = _p(ready, 0.5)


async def run_count(
    count: int,
    settings: Settings,
    workdir: Path,
    progress: Callable[[str], None],
) -> Row:
    """Measure one count on a fresh cluster; see the module docstring for the phases."""
    cluster: EmulatedCluster = kaito_cluster(watch_history=max(10000, 40 * count))
    listener: OperatorListener | None = None
    recorder: Recorder | None = None
    operator: OperatorProcess | None = None
    await cluster.start()
    try:
        listener = OperatorListener(cluster.emulator.store)
        await listener.start()
        await cluster.client.create(NAMESPACE, {"metadata": {"name": BENCH_NS}})
        recorder = Recorder(cluster.emulator.store)
        recorder.start(with_nodeclaims=settings.provisioner == "karpenter")
        bench = _Bench(
            count=count,
            settings=settings,
            cluster=cluster,
            listener=listener,
            recorder=recorder,
            kubeconfig=listener.write_kubeconfig(workdir / f"operator-{count}.kubeconfig"),
            seed=seed_workspace(),
            say=progress,
        )
        progress(f"{count} workspaces: starting the operator")
        operator = await bench.start_operator()
        row = await bench.converge(operator)
        if settings.resync:
            await operator.stop()
            operator = None
            operator = await bench.resync(row)
        await bench.probe(row)
        return row
    finally:
        if operator is not None:
            await operator.stop()
        if recorder is not None:
            await recorder.stop()
        if listener is not None:
            await listener.stop()
        await cluster.stop()


async def run(
    settings: Settings = FULL, progress: Callable[[str], None] | None = None
) -> BenchResult:
    """Run every count of `settings`, one after the other, each on a fresh cluster."""
    say = progress or (lambda _: None)
    started = datetime.now(UTC)
    began = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kaito-bench-cp-") as tmp:
        for count in settings.counts:
            rows.append(await run_count(count, settings, Path(tmp), say))
    return BenchResult(
        rows=rows,
        settings=settings,
        started=started.isoformat(timespec="seconds"),
        seconds=time.perf_counter() - began,
    )


# --- presenting -------------------------------------------------------------------------------

TABLE_HEADER: Final = (
    "count",
    "wall s",
    "req/ws",
    "writes/ws",
    "resync writes/ws",
    "p50 ms",
    "p99 ms",
    "peak RSS MiB",
    "paced p50 ms",
    "paced p99 ms",
    "reconciles/ws",
    "op CPU ms/ws",
    "cluster CPU ms/ws",
)


def _number(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def table_rows(result: BenchResult) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for row in result.rows:
        cpu = None if row.operator_cpu_s is None else row.operator_cpu_s * 1000 / row.count
        lines.append(
            (
                str(row.count),
                _number(row.wall_s, 2),
                _number(row.requests_per_ws, 1),
                _number(row.writes_per_ws, 1),
                _number(row.resync_writes_per_ws, 2),
                _number(row.latency_p50_ms, 1),
                _number(row.latency_p99_ms, 1),
                _number(row.peak_rss_mib, 1),
                _number(row.paced_p50_ms, 1),
                _number(row.paced_p99_ms, 1),
                _number(row.reconciles_per_ws, 1),
                _number(cpu, 1),
                _number(row.cluster_cpu_s * 1000 / row.count, 1),
            )
        )
    return lines


def format_table(result: BenchResult) -> str:
    """The rows as an aligned text table, one line per count."""
    lines = [TABLE_HEADER, *table_rows(result)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]

    def render(line: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def format_details(result: BenchResult) -> list[str]:
    """Per count: requests by verb, writes by resource, and the side figures of the row."""
    out: list[str] = []
    for row in result.rows:
        out.append(f"{row.count} workspaces ({row.provisioner} provisioner):")
        verbs = ", ".join(f"{v} {n / row.count:.2f}" for v, n in row.requests_by_verb.items())
        out.append(f"  requests/ws by verb: {verbs}")
        writes = ", ".join(f"{r} {n / row.count:.2f}" for r, n in row.writes_by_resource.items())
        out.append(f"  writes/ws: {writes or 'none'}")
        out.append(
            f"  at the last WorkspaceReady: {row.requests_at_ready_per_ws:.1f} req/ws, "
            f"{row.writes_at_ready_per_ws:.1f} writes/ws; apply took {row.apply_s:.2f}s; "
            f"apply to ready p50 {row.ready_p50_s:.2f}s, p99 {row.ready_p99_s:.2f}s"
        )
        out.append(
            f"  nodes Ready -> StatefulSet: burst n={row.latency_n}, "
            f"max {_number(row.latency_max_ms)} ms; paced n={row.paced_n} "
            f"(apply to ready p50 {_number(row.paced_ready_p50_s, 2)}s)"
        )
        out.append(
            f"  reconciles {row.reconcile_results}; relists {row.watch_lists}; "
            f"simulator+apply requests/ws {row.cluster_requests_per_ws:.1f}; "
            f"settled {row.settled}"
        )
        if row.resync_s is not None:
            resync_writes = ", ".join(
                f"{r} {n}" for r, n in (row.resync_writes_by_resource or {}).items()
            )
            out.append(
                f"  resync: {row.resync_s:.2f}s from process start, "
                f"{_number(row.resync_requests_per_ws, 2)} req/ws, "
                f"{_number(row.resync_reconciles_per_ws, 2)} reconciles/ws, writes: "
                f"{resync_writes or 'none'}; peak RSS {_number(row.resync_peak_rss_mib)} MiB; "
                f"CPU operator {_number(row.resync_operator_cpu_s)}s "
                f"(after its caches synced), cluster {_number(row.resync_cluster_cpu_s)}s"
            )
    return out
