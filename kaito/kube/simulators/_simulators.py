"""`Simulators`: every lifecycle simulator on one client, one clock and one engine.

    async with Simulators(client, SimulatorConfig(stages=image_pull_error(...))) as sims:
        ...                      # create NodeClaims, StatefulSets, Jobs through any client
        await sims.idle()        # until nothing is queued, running or due

The simulators are a controller like any other: they list and watch through the
`kaito.kube.Client` protocol and write status back, so they run against the emulator over
HTTP (`KubeClient`) as they would against a cluster whose kubelets, scheduler and Karpenter
were missing. The configuration is data: delays per step, extra stages in front of the
built-in ones (failures), the instance-type table, heartbeats, and which simulators run.
Delays are measured on the given clock; with a `ManualClock` a test decides when time passes.

For each kind, stages are tried in this order, first match wins: the built-in housekeeping
stages (finalizers, deletion, pod garbage collection), then the configured `stages` of that
kind in the order given, then the built-in lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

import attrs

from kaito.kube import (
    DEPLOYMENT,
    JOB,
    NODE,
    NODE_CLAIM,
    POD,
    STATEFUL_SET,
    Client,
    KubeError,
    NotFound,
    RawObject,
    ResourceKind,
)
from kaito.kube.simulators._clock import Clock, RealClock
from kaito.kube.simulators._engine import PendingStage
from kaito.kube.simulators._informer import Handler
from kaito.kube.simulators._jobs import JobController
from kaito.kube.simulators._nodes import (
    InstanceType,
    InstanceTypes,
    NodeClaimSettings,
    NodeClaimSimulator,
)
from kaito.kube.simulators._pods import PodSettings, PodSimulator
from kaito.kube.simulators._stages import Delay, Stage, as_delay
from kaito.kube.simulators._workloads import DeploymentController, Owners, StatefulSetController
from kaito.kube.simulators._world import World

FIELD_MANAGER = "kaito-simulator"


def _enqueuer(world: World, kind: ResourceKind) -> Handler:
    def enqueue(_old: RawObject | None, new: RawObject | None) -> None:
        world.enqueue(kind, new)

    return enqueue


@attrs.frozen
class Delays:
    """How long each built-in step takes (seconds, or a `Delay` with jitter or a field)."""

    nodeclaim_launch: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    nodeclaim_register: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    nodeclaim_initialize: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    nodeclaim_terminate: Delay = attrs.field(default=Delay(0.0), converter=as_delay)
    node_ready: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    pod_schedule: Delay = attrs.field(default=Delay(0.0), converter=as_delay)
    pod_start: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    pod_run: Delay = attrs.field(default=Delay(0.05), converter=as_delay)
    """How long a run-to-completion pod (a Job's) runs before it succeeds."""
    retry: Delay = attrs.field(default=Delay(0.1), converter=as_delay)
    """The first back-off after a failed write (doubling with each further failure)."""


StageList = Stage | Iterable["StageList"]
"""A stage, or (nested) lists of stages, as the failure helpers return them."""


def _stage_tuple(value: StageList) -> tuple[Stage, ...]:
    if isinstance(value, Stage):
        return (value,)
    out: list[Stage] = []
    for item in value:
        if isinstance(item, Stage):
            out.append(item)
        else:
            out.extend(_stage_tuple(item))
    return tuple(out)


def _positive_or_none(
    _: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive or None ({value})")


@attrs.frozen
class SimulatorConfig:
    """What the simulators do; the defaults suit quick end-to-end tests."""

    delays: Delays = Delays()
    stages: tuple[Stage, ...] = attrs.field(default=(), converter=_stage_tuple)
    """Extra stages (failure injection), tried before the built-in lifecycle of their kind.
    Lists of stages (as `image_pull_error` returns) may be given as they are."""
    instance_types: Mapping[str, int | InstanceType] | None = None
    """Instance type -> GPU count (or a full `InstanceType`); None: kaito's SKU catalog.
    A given table replaces the catalog; merge `builtin_instance_types()` in to extend it."""
    heartbeat_interval: float | None = attrs.field(default=None, validator=_positive_or_none)
    """Seconds between node heartbeats (a status write each); None: no heartbeats."""
    nodeclaims: bool = True
    nodes: bool = True
    pods: bool = True
    statefulsets: bool = True
    deployments: bool = True
    jobs: bool = True
    zone: str = "zone-1"
    """Zone label of nodes whose NodeClaim does not require one."""
    capacity_type: str = "on-demand"
    provider_prefix: str = "kaito-sim://"
    """providerID of a simulated node: this prefix and the NodeClaim's name."""
    workers: int = 4
    seed: int | None = 0
    """Seed of the random choices (name suffixes, jitter); None for a fresh one each run."""
    settle: float = 0.05
    """Seconds `idle` waits for stray watch events before it believes the quiet."""
    watch_timeout: int = 300


class Simulators:
    """The lifecycle simulators, started together: `async with Simulators(client) as sims`."""

    def __init__(
        self,
        client: Client,
        config: SimulatorConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.clock: Clock = clock if clock is not None else RealClock()
        self.client = client
        c = self.config
        self._world = World(
            client,
            self.clock,
            rng=random.Random(c.seed),
            field_manager=FIELD_MANAGER,
            workers=c.workers,
            retry=c.delays.retry,
            watch_timeout=c.watch_timeout,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._build()

    def _build(self) -> None:
        c, d, world = self.config, self.config.delays, self._world
        extra: dict[ResourceKind, list[Stage]] = {}
        for stage in c.stages:
            extra.setdefault(stage.kind, []).append(stage)
        plan: dict[ResourceKind, list[Stage]] = {}
        if c.nodeclaims or c.nodes:
            sim = NodeClaimSimulator(
                world,
                NodeClaimSettings(
                    instance_types=InstanceTypes(c.instance_types),
                    zone=c.zone,
                    capacity_type=c.capacity_type,
                    provider_prefix=c.provider_prefix,
                    launch=d.nodeclaim_launch,
                    register=d.nodeclaim_register,
                    initialize=d.nodeclaim_initialize,
                    terminate=d.nodeclaim_terminate,
                    node_ready=d.node_ready,
                    heartbeat=c.heartbeat_interval,
                ),
            )
            if c.nodeclaims:
                plan[NODE_CLAIM] = [
                    *sim.nodeclaim_preamble(),
                    *extra.pop(NODE_CLAIM, []),
                    *sim.nodeclaim_lifecycle(),
                ]
            if c.nodes:
                plan[NODE] = [*extra.pop(NODE, []), *sim.node_lifecycle()]
        if c.pods:
            pods = PodSimulator(
                world, PodSettings(schedule=d.pod_schedule, start=d.pod_start, run=d.pod_run)
            )
            plan[POD] = [*pods.preamble(), *extra.pop(POD, []), *pods.lifecycle()]
        if c.statefulsets or c.deployments or c.jobs:
            owners = Owners(world)
            if c.statefulsets:
                sts = StatefulSetController(world, owners)
                plan[STATEFUL_SET] = [*extra.pop(STATEFUL_SET, []), *sts.stages()]
            if c.deployments:
                deployments = DeploymentController(world, owners)
                plan[DEPLOYMENT] = [*extra.pop(DEPLOYMENT, []), *deployments.stages()]
            if c.jobs:
                jobs = JobController(world, owners)
                plan[JOB] = [*extra.pop(JOB, []), *jobs.stages()]
        for kind, stages in extra.items():
            # Stages for a kind no built-in simulator handles: a cache and the stages alone.
            world.informer(kind).add_handler(_enqueuer(world, kind))
            plan[kind] = stages
        for kind, stages in plan.items():
            world.engine.set_stages(kind, stages)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """List every kind the simulators use, then follow them and run stages."""
        if self._started:
            return
        self._started = True
        for informer in self._world.informers.values():
            try:
                await informer.sync()
            except NotFound:
                informer.available = False  # not served yet (CRD missing); retried in run()
            except KubeError:
                pass  # run() retries with back-off
        self._world.engine.start()
        self._tasks = [
            asyncio.create_task(informer.run(), name=f"sim-watch-{kind.plural}")
            for kind, informer in self._world.informers.items()
        ]

    async def stop(self) -> None:
        """Stop watching and running stages (pending stages are dropped)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._world.engine.stop()
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- observation ----------------------------------------------------------------------

    async def idle(self, limit: float = 10.0) -> None:
        """Wait until no stage is pending: every change seen is handled, nothing runs, and no
        stage waits for its delay — except, on a manual clock, stages whose time has not come
        (only the test can bring it), and recurring stages (heartbeats), which never end.

        Changes arrive by watch, a moment after the write that made them; so the quiet must
        also last `config.settle` seconds without a watch event. Raises TimeoutError after
        `limit` seconds, naming what is still pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        engine = self._world.engine
        while True:
            if not engine.busy():
                seen = self._world.events_seen
                await asyncio.sleep(self.config.settle)
                if not engine.busy() and self._world.events_seen == seen:
                    return
                continue
            if loop.time() >= deadline:
                raise TimeoutError(f"the simulators are not idle: {engine.describe()}")
            await asyncio.sleep(0.005)

    def pending(self) -> list[PendingStage]:
        """Stages waiting for their time (held stages with an infinite `due_in`)."""
        return self._world.engine.pending()

    @property
    def runs(self) -> Mapping[str, int]:
        """How often each stage's effect has run, by stage name."""
        return dict(self._world.engine.runs)

    @property
    def errors(self) -> int:
        """Effects that failed (and were retried), conflicts not counted."""
        return self._world.engine.errors

    def stages(self, kind: ResourceKind) -> tuple[Stage, ...]:
        """The stages tried for `kind`, in order."""
        return self._world.engine.stages(kind)
