"""The emulator benchmark's harness: the same operations against three configurations.

Later control-plane benchmarks drive a thousand workspaces through kaito's API-server emulator;
their figures mean something only if the emulator is not what limits them. This harness
measures what one emulator can serve and what the client costs on top:

- `store`: the operations called directly on `Emulator.store` (no HTTP, no client). It is the
  floor: what storage semantics alone cost (copies, validation, CEL, managedFields, fan-out).
- `http in-process`: an `Emulator` served on 127.0.0.1 in this process, spoken to through
  `KubeClient` (kubernetes_asyncio). Client and server share one event loop and one core, as
  they do in kaito's tests and in the local mode.
- `http subprocess`: the emulator in a child process started with `kaito.kube.emulator.serve`,
  so that client and server each have an event loop (and, on two cores, a core) of their own.
  There the server's CPU time is read from /proc, which gives its cost per operation apart
  from the client's: `1000 / server ms per op` is what one emulator core can serve.

Every configuration starts from a fresh emulator and runs the same bounded phases: creates
(ConfigMaps, and Workspaces validated by the generated CRD schema and its CEL rules), gets,
lists of 100 / 1,000 / 5,000 objects with and without a label selector matching a tenth of
them, updates carrying the resourceVersion, merge patches (of a ConfigMap and of a Workspace's
status), and watches: the delay from issuing a write to each watcher receiving its event, for
paced writes and for a burst. A closed loop of `concurrency` workers runs each phase; every
HTTP phase runs at each concurrency of `Sizes.concurrency`, the store only at 1 (its calls are
synchronous, more workers cannot overlap them). For the same reason the store's writers never
yield during a watch burst, so its events are delivered after the last write and its burst
latency spans the whole burst; its paced rows are the reference for fan-out latency.

Figures are only compared within one run (see benchmarks/README.md): `x store` is the store's
throughput divided by the row's, i.e. how many times the HTTP path is slower than storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol, cast

import attrs
import yaml

from kaito.api import workspace_crd
from kaito.kube import (
    CONFIG_MAP,
    NAMESPACE,
    WORKSPACE,
    KubeClient,
    RawObject,
    ResourceKind,
    WatchEvent,
)
from kaito.kube.emulator import MERGE_PATCH, Emulator, Store

REPO: Final = Path(__file__).resolve().parents[2]
SEED_WORKSPACE: Final = REPO / "tests" / "data" / "seed" / "phi-3-inference.yaml"

STORE: Final = "store"
IN_PROCESS: Final = "http in-process"
SUBPROCESS: Final = "http subprocess"
CONFIGS: Final = (STORE, IN_PROCESS, SUBPROCESS)

# The seed workspace is written as v1alpha1; it is created unchanged through that version.
WORKSPACE_V1ALPHA1: Final = attrs.evolve(WORKSPACE, version="v1alpha1")

WARM_NS: Final = "bench-warm-up"
BENCH_NS: Final = "bench"
LIST_NS: Final = "bench-list"
TENTH_LABEL: Final = "bench.kaito.sh/tenth"
TENTH_SELECTOR: Final = f"{TENTH_LABEL}=yes"

OP_CREATE_CM: Final = "create ConfigMap"
OP_CREATE_WS: Final = "create Workspace (CRD schema + CEL)"
OP_GET: Final = "get ConfigMap"
OP_UPDATE: Final = "update ConfigMap (with resourceVersion)"
OP_PATCH_CM: Final = "merge-patch ConfigMap"
OP_PATCH_STATUS: Final = "merge-patch Workspace status"

# Bounds on waiting, so that a broken configuration fails the run instead of hanging it.
_START_TIMEOUT: Final = 30.0
_WATCH_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 10.0


def list_operation(size: int, selector: bool) -> str:
    """The row name of a list of `size` ConfigMaps (with the 10% selector or without)."""
    return f"list {size} ConfigMaps" + (", selector 10%" if selector else "")


def watch_operation(watchers: int, burst: bool) -> str:
    """The row name of a watch phase: paced writes (latency) or a burst (throughput)."""
    plural = "watcher" if watchers == 1 else "watchers"
    return f"watch {watchers} {plural}, " + ("burst" if burst else "paced")


@attrs.frozen
class Sizes:
    """How much work each phase does. Every loop of the benchmark is bounded by these."""

    creates: int
    """Objects created per create row (ConfigMaps and Workspaces alike)."""
    gets: int
    updates: int
    """Updates, and merge patches, per row (at most `creates`: one write per object)."""
    list_sizes: tuple[int, ...]
    list_reads: int
    """Objects read per list row; the repetitions are `list_reads / size`, between 3 and 50."""
    watch_paced: int
    """Writes of a paced watch row: each waits until every watcher has seen the previous one."""
    watch_burst: int
    """Writes of a burst watch row, issued by max(concurrency) writers as fast as they go."""
    concurrency: tuple[int, ...] = (1, 16)
    watchers: tuple[int, ...] = (1, 10)

    def __attrs_post_init__(self) -> None:
        if self.updates > self.creates:
            raise ValueError("updates must not exceed creates: each object is written once")
        if min(self.creates, self.gets, self.updates, self.watch_paced, self.watch_burst) < 1:
            raise ValueError("every phase needs at least one operation")

    def list_repeats(self, size: int) -> int:
        return max(3, min(50, self.list_reads // max(1, size)))


FULL: Final = Sizes(
    creates=1500,
    gets=1500,
    updates=500,
    list_sizes=(100, 1000, 5000),
    list_reads=20000,
    watch_paced=200,
    watch_burst=500,
)
QUICK: Final = Sizes(
    creates=80,
    gets=80,
    updates=40,
    list_sizes=(100, 400),
    list_reads=1600,
    watch_paced=15,
    watch_burst=32,
)


@attrs.define
class Row:
    """One measured operation in one configuration."""

    operation: str
    config: str
    concurrency: int
    n: int
    """Operations timed (for watch rows: events delivered, one per write and watcher)."""
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    client_cpu_ms_per_op: float | None = None
    """CPU of this process per operation (in-process: client and server together)."""
    server_cpu_ms_per_op: float | None = None
    """CPU of the emulator's process per operation (subprocess configuration only)."""
    slowdown_vs_store: float | None = None
    """The store's ops/s over this row's: how many times slower than storage alone."""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class BenchResult:
    rows: list[Row]
    sizes: Sizes
    configs: tuple[str, ...]
    started: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": "emulator",
            "started": self.started,
            "seconds": round(self.seconds, 2),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "sizes": attrs.asdict(self.sizes),
            "configs": list(self.configs),
            "rows": [row.to_json() for row in self.rows],
        }

    def row(self, operation: str, config: str, concurrency: int = 1) -> Row:
        for row in self.rows:
            if (row.operation, row.config, row.concurrency) == (operation, config, concurrency):
                return row
        raise KeyError((operation, config, concurrency))


# --- what is measured -------------------------------------------------------------------------


class Target(Protocol):
    """One configuration: the operations of the benchmark, however they reach the store."""

    config: str

    async def create(self, kind: ResourceKind, obj: RawObject) -> RawObject: ...

    async def get(self, kind: ResourceKind, name: str, namespace: str) -> RawObject: ...

    async def list(self, kind: ResourceKind, namespace: str, selector: str | None) -> int: ...

    async def update(self, kind: ResourceKind, obj: RawObject) -> RawObject: ...

    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        namespace: str,
        patch: dict[str, Any],
        *,
        status: bool = False,
    ) -> RawObject: ...

    async def resource_version(self, kind: ResourceKind, namespace: str) -> str: ...

    def watch(self, kind: ResourceKind, namespace: str, rv: str) -> AsyncIterator[str]:
        """Names of the objects in the events after `rv` (bookmarks left out)."""
        ...

    def server_cpu(self) -> float | None:
        """CPU seconds the server has used so far, when it runs apart from this process."""
        ...


@attrs.define
class StoreTarget:
    """Calls on the store itself: synchronous, no serialisation, no HTTP."""

    store: Store
    config: str = STORE

    async def create(self, kind: ResourceKind, obj: RawObject) -> RawObject:
        return self.store.create(kind, obj)

    async def get(self, kind: ResourceKind, name: str, namespace: str) -> RawObject:
        return self.store.read(kind, namespace, name)

    async def list(self, kind: ResourceKind, namespace: str, selector: str | None) -> int:
        return len(self.store.list(kind, namespace, label_selector=selector).items)

    async def update(self, kind: ResourceKind, obj: RawObject) -> RawObject:
        return self.store.update(kind, obj)

    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        namespace: str,
        patch: dict[str, Any],
        *,
        status: bool = False,
    ) -> RawObject:
        return self.store.patch(
            kind, namespace, name, patch, MERGE_PATCH, subresource="status" if status else ""
        )

    async def resource_version(self, kind: ResourceKind, namespace: str) -> str:
        return str(self.store.resource_version)

    async def watch(self, kind: ResourceKind, namespace: str, rv: str) -> AsyncIterator[str]:
        watcher, _ = self.store.watch(kind, namespace, resource_version=rv)
        try:
            async for event in watcher:
                yield str(event.object["metadata"]["name"])
        finally:
            watcher.close()

    def server_cpu(self) -> float | None:
        return None


@attrs.define
class ClientTarget:
    """Calls through `KubeClient` over HTTP to an emulator on 127.0.0.1."""

    client: KubeClient
    config: str
    server_pid: int | None = None

    async def create(self, kind: ResourceKind, obj: RawObject) -> RawObject:
        return await self.client.create(kind, obj)

    async def get(self, kind: ResourceKind, name: str, namespace: str) -> RawObject:
        return await self.client.get(kind, name, namespace=namespace)

    async def list(self, kind: ResourceKind, namespace: str, selector: str | None) -> int:
        return len(
            (await self.client.list(kind, namespace=namespace, label_selector=selector)).items
        )

    async def update(self, kind: ResourceKind, obj: RawObject) -> RawObject:
        return await self.client.update(kind, obj)

    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        namespace: str,
        patch: dict[str, Any],
        *,
        status: bool = False,
    ) -> RawObject:
        if status:
            return await self.client.patch_status(kind, name, patch, namespace=namespace)
        return await self.client.patch(kind, name, patch, namespace=namespace)

    async def resource_version(self, kind: ResourceKind, namespace: str) -> str:
        return (await self.client.list(kind, namespace=namespace, limit=1)).resource_version

    async def watch(self, kind: ResourceKind, namespace: str, rv: str) -> AsyncIterator[str]:
        # KubeClient.watch is an async generator; the protocol only promises an iterator.
        events = cast(
            AsyncGenerator[WatchEvent, None],
            self.client.watch(kind, namespace=namespace, resource_version=rv, timeout_seconds=600),
        )
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if event.type != "BOOKMARK":
                    yield str(event.object["metadata"]["name"])

    def server_cpu(self) -> float | None:
        return None if self.server_pid is None else process_cpu_seconds(self.server_pid)


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process, from /proc (None where there is no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses; the fields follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@attrs.define
class _Clock:
    """CPU and wall time at the start of a phase, to turn into a row at its end."""

    target: Target
    wall: float = attrs.field(factory=time.perf_counter)
    client_cpu: float = attrs.field(factory=time.process_time)
    server_cpu: float | None = None

    def __attrs_post_init__(self) -> None:
        self.server_cpu = self.target.server_cpu()

    def row(self, operation: str, concurrency: int, latencies: Sequence[float]) -> Row:
        elapsed = time.perf_counter() - self.wall
        n = len(latencies)
        server_now = self.target.server_cpu()
        server = (
            None
            if server_now is None or self.server_cpu is None
            else (server_now - self.server_cpu) * 1000 / n
        )
        client = None
        if self.target.config != STORE:
            client = (time.process_time() - self.client_cpu) * 1000 / n
        return Row(
            operation=operation,
            config=self.target.config,
            concurrency=concurrency,
            n=n,
            seconds=elapsed,
            ops_per_s=n / elapsed if elapsed > 0 else math.inf,
            p50_ms=percentile(latencies, 0.5) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            client_cpu_ms_per_op=client,
            server_cpu_ms_per_op=server,
        )


async def _closed_loop(
    op: Callable[[int], Awaitable[object]], count: int, concurrency: int
) -> list[float]:
    """Run `op(0..count-1)` with `concurrency` workers; the latency of each call, in seconds."""
    latencies = [0.0] * count
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < count:
            index = issued
            issued += 1
            began = time.perf_counter()
            await op(index)
            latencies[index] = time.perf_counter() - began

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return latencies


async def _measure(
    target: Target,
    operation: str,
    op: Callable[[int], Awaitable[object]],
    count: int,
    concurrency: int,
) -> Row:
    clock = _Clock(target)
    latencies = await _closed_loop(op, count, concurrency)
    return clock.row(operation, concurrency, latencies)


# --- the objects ------------------------------------------------------------------------------


def seed_workspace() -> RawObject:
    """The seed's phi-3 inference workspace, as the user wrote it."""
    loaded = yaml.safe_load(SEED_WORKSPACE.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{SEED_WORKSPACE} is not a YAML object")
    return loaded


def _config_map(name: str, namespace: str, labels: dict[str, str] | None = None) -> RawObject:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "data": {"model": "phi-3-mini-4k-instruct", "replicas": "1"}}


def _workspace(seed: RawObject, name: str, namespace: str) -> RawObject:
    obj = copy.deepcopy(seed)
    obj["metadata"] = {**obj.get("metadata", {}), "name": name, "namespace": namespace}
    return obj


def _status_patch(index: int, round_name: str) -> dict[str, Any]:
    """A status patch that differs from every earlier one (an unchanged object is no write)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "WorkspaceReady",
        "status": "True" if index % 2 else "False",
        "reason": "BenchmarkRound",
        "message": f"round {round_name}, workspace {index}",
        "lastTransitionTime": now,
        "observedGeneration": 1,
    }
    return {"status": {"conditions": [condition]}}


# --- the phases -------------------------------------------------------------------------------


async def _suite(
    target: Target,
    sizes: Sizes,
    concurrencies: Sequence[int],
    progress: Callable[[str], None],
) -> list[Row]:
    rows: list[Row] = []
    seed = seed_workspace()
    for ns in (WARM_NS, BENCH_NS, LIST_NS, *(f"bench-watch-{w}" for w in sizes.watchers)):
        await target.create(NAMESPACE, {"metadata": {"name": ns}})
    # Warm up outside of any measurement: open the connections the widest phase will use and
    # run each kind of request once per worker, so that first-use costs (lazy imports,
    # compiling the CRD's CEL rules) do not land in the first row.
    widest = max(concurrencies)

    async def warm_up(i: int) -> None:
        await target.get(NAMESPACE, BENCH_NS, "")
        cm = await target.create(CONFIG_MAP, _config_map(f"warm-{i}", WARM_NS))
        await target.update(CONFIG_MAP, cm)
        await target.create(WORKSPACE_V1ALPHA1, _workspace(seed, f"warm-{i}", WARM_NS))
        await target.patch(
            WORKSPACE_V1ALPHA1, f"warm-{i}", WARM_NS, _status_patch(i, "warm-up"), status=True
        )
        await target.list(CONFIG_MAP, WARM_NS, TENTH_SELECTOR)

    await _closed_loop(warm_up, 2 * widest, widest)

    latest: dict[str, RawObject] = {}
    for c in concurrencies:
        progress(f"{target.config}: create (concurrency {c})")

        async def create_cm(i: int, c: int = c) -> None:
            obj = await target.create(CONFIG_MAP, _config_map(f"cm-{c}-{i}", BENCH_NS))
            latest[obj["metadata"]["name"]] = obj

        rows.append(await _measure(target, OP_CREATE_CM, create_cm, sizes.creates, c))

        async def create_ws(i: int, c: int = c) -> None:
            await target.create(WORKSPACE_V1ALPHA1, _workspace(seed, f"ws-{c}-{i}", BENCH_NS))

        rows.append(await _measure(target, OP_CREATE_WS, create_ws, sizes.creates, c))

    first = concurrencies[0]
    for c in concurrencies:
        progress(f"{target.config}: get, update, patch (concurrency {c})")

        async def get(i: int) -> None:
            await target.get(CONFIG_MAP, f"cm-{first}-{i % sizes.creates}", BENCH_NS)

        rows.append(await _measure(target, OP_GET, get, sizes.gets, c))

        async def update(i: int, c: int = c) -> None:
            name = f"cm-{first}-{i}"
            body = copy.deepcopy(latest[name])  # carries the resourceVersion last seen
            body["data"]["replicas"] = f"{c}-{i}"
            latest[name] = await target.update(CONFIG_MAP, body)

        rows.append(await _measure(target, OP_UPDATE, update, sizes.updates, c))

        async def patch_cm(i: int, c: int = c) -> None:
            name = f"cm-{first}-{i}"
            patch = {"data": {"replicas": f"patched-{c}-{i}"}}
            latest[name] = await target.patch(CONFIG_MAP, name, BENCH_NS, patch)

        rows.append(await _measure(target, OP_PATCH_CM, patch_cm, sizes.updates, c))

        async def patch_status(i: int, c: int = c) -> None:
            name, patch = f"ws-{first}-{i}", _status_patch(i, f"concurrency {c}")
            await target.patch(WORKSPACE_V1ALPHA1, name, BENCH_NS, patch, status=True)

        rows.append(await _measure(target, OP_PATCH_STATUS, patch_status, sizes.updates, c))

    rows.extend(await _list_rows(target, sizes, widest, progress))
    for watchers in sizes.watchers:
        progress(f"{target.config}: {watch_operation(watchers, False).removesuffix(', paced')}")
        rows.extend(await _watch_rows(target, sizes, watchers))
    return rows


async def _list_rows(
    target: Target, sizes: Sizes, fill_concurrency: int, progress: Callable[[str], None]
) -> list[Row]:
    """Grow one namespace to each size in turn and list it, with and without the selector."""
    rows: list[Row] = []
    present = 0
    for size in sorted(sizes.list_sizes):
        progress(f"{target.config}: list {size}")
        start = present

        async def fill(i: int, start: int = start) -> None:
            index = start + i
            labels = {TENTH_LABEL: "yes" if index % 10 == 0 else "no"}
            await target.create(CONFIG_MAP, _config_map(f"item-{index}", LIST_NS, labels))

        await _closed_loop(fill, size - present, fill_concurrency)
        present = size
        repeats = sizes.list_repeats(size)
        for selector in (None, TENTH_SELECTOR):
            expected = size if selector is None else len(range(0, size, 10))

            async def read(
                _: int, selector: str | None = selector, expected: int = expected
            ) -> None:
                found = await target.list(CONFIG_MAP, LIST_NS, selector)
                if found != expected:
                    raise AssertionError(f"listed {found} objects, expected {expected}")

            operation = list_operation(size, selector is not None)
            rows.append(await _measure(target, operation, read, repeats, 1))
    return rows


@attrs.define
class _Awaited:
    """Objects written together: `done` is set once every watcher has seen each of them."""

    remaining: int
    done: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define
class _Deliveries:
    """What the watchers of one phase received: per object, when it was written and seen."""

    watchers: int
    issued: dict[str, float] = attrs.field(factory=dict)
    seen: dict[str, int] = attrs.field(factory=dict)
    latencies: list[float] = attrs.field(factory=list)
    awaited: dict[str, _Awaited] = attrs.field(factory=dict)

    def expect(self, names: Sequence[str]) -> asyncio.Event:
        """An event set when every watcher has seen every name (call before the writes)."""
        group = _Awaited(len(names))
        for name in names:
            self.awaited[name] = group
        return group.done

    def deliver(self, name: str) -> None:
        now = time.perf_counter()
        began = self.issued.get(name)
        if began is not None:
            self.latencies.append(now - began)
        count = self.seen.get(name, 0) + 1
        self.seen[name] = count
        group = self.awaited.get(name)
        if count == self.watchers and group is not None:
            group.remaining -= 1
            if group.remaining == 0:
                group.done.set()


async def _until(event: asyncio.Event, tasks: Iterable[asyncio.Task[None]]) -> None:
    """Wait for `event`; a watcher that failed meanwhile raises its error instead of a hang."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait(
            [waiter, *tasks], timeout=_WATCH_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    for task in done:
        if task is not waiter:
            task.result()
            raise RuntimeError("a watch ended early")
    if waiter not in done:
        raise TimeoutError(f"watch events not delivered within {_WATCH_TIMEOUT}s")


async def _watch_rows(target: Target, sizes: Sizes, watchers: int) -> list[Row]:
    """Paced writes (the latency of one event to every watcher), then a burst (throughput)."""
    namespace = f"bench-watch-{watchers}"
    rv = await target.resource_version(CONFIG_MAP, namespace)
    deliveries = _Deliveries(watchers)

    async def consume() -> None:
        async for name in target.watch(CONFIG_MAP, namespace, rv):
            deliveries.deliver(name)

    tasks = [asyncio.create_task(consume()) for _ in range(watchers)]
    rows: list[Row] = []
    try:
        # Every watcher has its stream open once each has seen this object.
        ready = deliveries.expect(["ready"])
        await target.create(CONFIG_MAP, _config_map("ready", namespace))
        await _until(ready, tasks)

        clock = _Clock(target)
        for i in range(sizes.watch_paced):
            name = f"paced-{i}"
            arrived = deliveries.expect([name])
            deliveries.issued[name] = time.perf_counter()
            await target.create(CONFIG_MAP, _config_map(name, namespace))
            await _until(arrived, tasks)
        rows.append(clock.row(watch_operation(watchers, False), 1, deliveries.latencies))

        deliveries.latencies = []
        names = [f"burst-{i}" for i in range(sizes.watch_burst)]
        arrived = deliveries.expect(names)

        async def write(i: int) -> None:
            deliveries.issued[names[i]] = time.perf_counter()
            await target.create(CONFIG_MAP, _config_map(names[i], namespace))

        clock = _Clock(target)
        writers = max(sizes.concurrency)
        await _closed_loop(write, sizes.watch_burst, writers)
        await _until(arrived, tasks)
        rows.append(clock.row(watch_operation(watchers, True), writers, deliveries.latencies))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return rows


# --- the configurations -----------------------------------------------------------------------

_SERVER_SCRIPT: Final = """
import asyncio, sys
from kaito.api import workspace_crd
from kaito.kube.emulator import serve

asyncio.run(
    serve("127.0.0.1", 0, [workspace_crd()], sys.argv[1], announce=lambda l: print(l, flush=True))
)
"""


@contextlib.asynccontextmanager
async def emulator_subprocess(kubeconfig: Path) -> AsyncIterator[int]:
    """An emulator serving in a child process; yields its pid once its kubeconfig is written."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SERVER_SCRIPT,
        str(kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(_START_TIMEOUT):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError("the emulator process exited before serving")
                if b"serving at" in line:
                    break
        yield process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def _run_config(
    config: str, sizes: Sizes, workdir: Path, progress: Callable[[str], None]
) -> list[Row]:
    concurrencies = sorted(set(sizes.concurrency))
    if config == STORE:
        # The store is used exactly as tests use it; the emulator need not serve for that.
        emu = Emulator(crds=[workspace_crd()])
        return await _suite(StoreTarget(emu.store), sizes, concurrencies[:1], progress)
    if config == IN_PROCESS:
        async with Emulator(crds=[workspace_crd()]) as emu:
            path = emu.write_kubeconfig(workdir / "in-process.kubeconfig")
            async with await KubeClient.from_kubeconfig(path) as client:
                return await _suite(ClientTarget(client, config), sizes, concurrencies, progress)
    if config == SUBPROCESS:
        path = workdir / "subprocess.kubeconfig"
        async with (
            emulator_subprocess(path) as pid,
            await KubeClient.from_kubeconfig(path) as client,
        ):
            target = ClientTarget(client, config, server_pid=pid)
            return await _suite(target, sizes, concurrencies, progress)
    raise ValueError(f"unknown configuration {config!r}; choose from {CONFIGS}")


def _compare_with_store(rows: list[Row]) -> None:
    store = {row.operation: row for row in rows if row.config == STORE}
    for row in rows:
        reference = store.get(row.operation)
        if row.config != STORE and reference is not None and row.ops_per_s > 0:
            row.slowdown_vs_store = reference.ops_per_s / row.ops_per_s


async def run(
    sizes: Sizes = FULL,
    configs: Sequence[str] = CONFIGS,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run every phase in each configuration, one configuration after the other."""
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; choose from {CONFIGS}")
    say = progress or (lambda _: None)
    started = datetime.now(UTC)
    began = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kaito-bench-emulator-") as tmp:
        for config in configs:
            rows.extend(await _run_config(config, sizes, Path(tmp), say))
    _compare_with_store(rows)
    # Rows of one operation together: by concurrency, then the configurations side by side.
    order = {config: i for i, config in enumerate(configs)}
    positions: dict[str, int] = {}
    for row in rows:
        positions.setdefault(row.operation, len(positions))
    rows.sort(key=lambda r: (positions[r.operation], r.concurrency, order[r.config]))
    return BenchResult(
        rows=rows,
        sizes=sizes,
        configs=tuple(configs),
        started=started.isoformat(timespec="seconds"),
        seconds=time.perf_counter() - began,
    )


# --- presenting -------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if value >= 1000 or digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def format_table(result: BenchResult) -> str:
    """The rows as an aligned text table, configurations of one operation next to each other."""
    header = (
        "operation",
        "c",
        "config",
        "n",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "x store",
        "cli CPU ms/op",
        "srv CPU ms/op",
    )
    lines: list[tuple[str, ...]] = [header]
    previous: tuple[str, int] | None = None
    for row in result.rows:
        key = (row.operation, row.concurrency)
        first = key != previous
        previous = key
        lines.append(
            (
                row.operation if first else "",
                str(row.concurrency) if first else "",
                row.config,
                str(row.n),
                _number(row.ops_per_s, 0),
                _number(row.p50_ms, 3 if row.p50_ms < 1 else 2),
                _number(row.p99_ms, 3 if row.p99_ms < 1 else 2),
                _number(row.slowdown_vs_store, 1),
                _number(row.client_cpu_ms_per_op, 3),
                _number(row.server_cpu_ms_per_op, 3),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text_columns = {0, 2}

    def render(line: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(width) if i in text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def capacity_summary(result: BenchResult) -> list[str]:
    """What one emulator core can serve, from the server's CPU per operation (subprocess)."""
    out: list[str] = []
    for row in result.rows:
        cpu = row.server_cpu_ms_per_op
        if row.config == SUBPROCESS and cpu and row.concurrency == max(result.sizes.concurrency):
            out.append(f"{row.operation}: about {1000 / cpu:,.0f}/s per emulator core")
    return out
