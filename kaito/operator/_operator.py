"""The operator loop: leader election, watches, workers, probes, and a graceful end.

`Operator` holds no business logic. It decides *when* a workspace is reconciled, never *how*:
the watches turn changes into workspace keys, the work queue de-duplicates and paces them, and
a fixed number of workers hand each key to the `Reconciler`. What a reconcile returns only
decides when the key comes back:

- a plain `Result()`: not until a watch sees a change (success; backoff reset);
- `Result(requeue_after=s)`: after `s` seconds (backoff reset);
- `TerminalError`: not until the workspace changes (logged and counted, no retry);
- any other exception: after the key's exponential backoff.

With leader election on, a replica first stands by for the Lease; only the leader lists,
watches and reconciles. If the lease is lost, work stops at once (in-flight reconciles are
cancelled: another replica may already be working) and the replica stands by again. On
SIGTERM/SIGINT the leader stops taking keys, lets running reconciles finish within
`shutdown_timeout`, then releases the lease so a standby replica takes over immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Literal

from kaito.kube import WORKSPACE, Client, KubeClient, RawObject, ResourceKind
from kaito.operator._clock import Clock, SystemClock
from kaito.operator._leader import LeaderElector
from kaito.operator._logging import log
from kaito.operator._metrics import OperatorMetrics
from kaito.operator._queue import WorkQueue
from kaito.operator._server import ProbeServer
from kaito.operator._settings import OperatorSettings, default_identity
from kaito.operator._watch import CHILD_KINDS, CHILD_SELECTOR, Informer, workspace_key
from kaito.reconcile import Reconciler, TerminalError

_logger = logging.getLogger("kaito.operator")

State = Literal["starting", "standby", "leading", "stopping", "stopped", "failed"]


class Operator:
    """Drives a `Reconciler` from watches; `await Operator(...).run(stop)` until `stop` is set.

    `settings` supplies the machinery's knobs (concurrency, leader election, addresses,
    backoff, timeouts); the provisioner and runtime settings are for whoever builds the
    reconciler (see `run_operator`).
    """

    def __init__(
        self,
        client: Client,
        reconciler: Reconciler,
        settings: OperatorSettings | None = None,
        *,
        clock: Clock | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.client = client
        self.reconciler = reconciler
        self.settings = settings or OperatorSettings()
        self.identity = self.settings.identity or default_identity()
        self.metrics = metrics or OperatorMetrics()
        self._clock: Clock = clock or SystemClock()
        s = self.settings
        self.elector: LeaderElector | None = (
            LeaderElector(
                client,
                name=s.lease_name,
                namespace=s.lease_namespace,
                identity=self.identity,
                lease_duration=s.lease_duration,
                renew_deadline=s.renew_deadline,
                retry_period=s.retry_period,
                clock=self._clock,
                metrics=self.metrics,
            )
            if s.leader_election
            else None
        )
        self.server = ProbeServer(
            metrics=self.metrics,
            healthy=lambda: self.healthy,
            ready=self.readiness,
            metrics_address=s.metrics_addr,
            health_address=s.health_addr,
        )
        self.state: State = "starting"
        self.queue: WorkQueue | None = None
        """The work queue of the current term as leader (None while not leading)."""
        self.informers: list[Informer] = []
        self.started = asyncio.Event()
        """Set once the probe and metrics endpoints listen."""
        self._stop = asyncio.Event()

    # -- state ----------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """True while this replica does the work (always, without leader election)."""
        return self.state == "leading"

    @property
    def healthy(self) -> bool:
        """False once the loop has failed (what `/healthz` reports)."""
        return self.state != "failed"

    @property
    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): ready as leader with synced watches, or as a standby follower."""
        if self.state == "standby":
            return True, "standing by for the lease"
        if self.state == "leading":
            if self.synced:
                return True, "leading; watches synced"
            return False, "leading; waiting for the watches to sync"
        return False, self.state

    def stop(self) -> None:
        """Ask `run` to finish gracefully (what SIGTERM does); also before it started."""
        self._stop.set()

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve probes and work (as leader) until `stop` is set or `stop()` is called."""
        if stop is not None:
            if self._stop.is_set():
                stop.set()
            self._stop = stop
        stop = self._stop
        await self.server.start()
        self.started.set()
        log(
            _logger,
            logging.INFO,
            "operator started",
            identity=self.identity,
            leader_election=self.elector is not None,
            metrics=self.server.url("metrics"),
            health=self.server.url("health"),
        )
        try:
            if self.elector is None:
                await self._lead(stop, None)
            else:
                while not stop.is_set():
                    self.state = "standby"
                    if not await self.elector.acquire(stop):
                        break
                    lost = await self._term(self.elector, stop)
                    if lost:
                        log(
                            _logger,
                            logging.WARNING,
                            "stopped working: the lease was lost",
                            identity=self.identity,
                        )
            self.state = "stopping"
            if self.elector is not None:
                await self.elector.release()
            self.state = "stopped"
        except asyncio.CancelledError:
            self.state = "stopped"
            raise
        except BaseException:
            self.state = "failed"
            raise
        finally:
            await self.server.stop()
            log(_logger, logging.INFO, "operator stopped", identity=self.identity)

    async def _term(self, elector: LeaderElector, stop: asyncio.Event) -> bool:
        """One term as leader; True when it ended because the lease was lost."""
        lost = asyncio.Event()
        finished = asyncio.Event()

        async def keep_lease() -> None:
            if not await elector.hold(finished):
                lost.set()

        # Renewing goes on while the workers drain, and ends only with `finished`.
        keeper = asyncio.create_task(keep_lease())
        try:
            await self._lead(stop, lost)
        finally:
            finished.set()
            await keeper
        return lost.is_set()

    async def _lead(self, stop: asyncio.Event, lost: asyncio.Event | None) -> None:
        """Watch and reconcile until `stop` (drain) or `lost` (abandon) is set."""
        s = self.settings
        self.state = "leading"
        queue = WorkQueue(
            backoff_base=s.backoff_base,
            backoff_cap=s.backoff_cap,
            clock=self._clock,
            metrics=self.metrics,
        )
        self.queue = queue

        def enqueue(kind: ResourceKind, event_type: str, obj: RawObject) -> None:
            key = workspace_key(kind, obj)
            if key is not None:
                queue.add(key)

        workspaces = Informer(
            self.client,
            WORKSPACE,
            enqueue,
            clock=self._clock,
            metrics=self.metrics,
            watch_timeout=s.watch_timeout,
        )
        self.informers = [workspaces] + [
            Informer(
                self.client,
                kind,
                enqueue,
                label_selector=CHILD_SELECTOR,
                clock=self._clock,
                metrics=self.metrics,
                watch_timeout=s.watch_timeout,
            )
            for kind in CHILD_KINDS
        ]
        self.metrics.watch_workspaces(workspaces.objects)
        watches = [
            asyncio.create_task(i.run(), name=f"watch {i.kind.kind}") for i in self.informers
        ]
        workers = [
            asyncio.create_task(self._worker(queue), name=f"worker {n}")
            for n in range(s.concurrency)
        ]
        waits: list[asyncio.Task[bool]] = [asyncio.create_task(stop.wait())]
        if lost is not None:
            waits.append(asyncio.create_task(lost.wait()))
        abandon = True
        try:
            # Watches and workers run until told to stop; one that ends by itself has failed
            # in a way the loop does not handle, and so does the operator.
            await asyncio.wait([*waits, *watches, *workers], return_when=asyncio.FIRST_COMPLETED)
            for task in (*watches, *workers):
                failure = task.exception() if task.done() and not task.cancelled() else None
                if failure is not None:
                    raise failure
            abandon = lost is not None and lost.is_set()
        finally:
            if stop.is_set():
                self.state = "stopping"
            queue.shut_down()
            for helper in (*waits, *watches):
                helper.cancel()
            if abandon:
                for worker in workers:
                    worker.cancel()
            elif workers:
                _, pending = await asyncio.wait(workers, timeout=s.shutdown_timeout)
                if pending:
                    log(
                        _logger,
                        logging.WARNING,
                        "reconciles still running at the shutdown timeout were cancelled",
                        count=len(pending),
                    )
                for worker in pending:
                    worker.cancel()
            await asyncio.gather(*waits, *watches, *workers, return_exceptions=True)
            self.metrics.watch_workspaces(None)
            self.metrics.queue_depth.set(0)
            self.informers = []
            self.queue = None
            self.state = "stopping" if stop.is_set() else "standby"

    async def _worker(self, queue: WorkQueue) -> None:
        while (key := await queue.get()) is not None:
            try:
                await self._process(queue, key)
            finally:
                queue.done(key)

    async def _process(self, queue: WorkQueue, key: str) -> None:
        metrics = self.metrics
        started = self._clock.monotonic()
        metrics.reconcile_active.inc()
        fields: dict[str, object] = {}
        level = logging.INFO
        try:
            result = await self.reconciler.reconcile(key)
        except TerminalError as exc:
            queue.forget(key)
            outcome = "terminal"
            metrics.reconcile_errors.inc()
            level = logging.WARNING
            fields["error"] = str(exc)
        except Exception as exc:
            delay = queue.add_rate_limited(key)
            outcome = "error"
            metrics.reconcile_errors.inc()
            level = logging.ERROR
            fields.update(
                error=f"{type(exc).__name__}: {exc}", retry_in=delay, failures=queue.failures(key)
            )
        else:
            queue.forget(key)
            if result.requeue_after is not None:
                queue.add_after(key, result.requeue_after)
                outcome = "requeue"
                fields["requeue_after"] = result.requeue_after
            else:
                outcome = "success"
        finally:
            metrics.reconcile_active.dec()
        duration = max(0.0, self._clock.monotonic() - started)
        metrics.reconcile_total.labels(result=outcome).inc()
        metrics.reconcile_duration.observe(duration)
        log(_logger, level, "reconciled", key=key, result=outcome, duration=duration, **fields)


async def run_operator(
    settings: OperatorSettings,
    build_reconciler: Callable[[Client], Reconciler],
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Connect to the cluster the settings name, and run an operator until stopped.

    The client comes from `--kubeconfig`/`--context` when given, else from the pod's service
    account in a cluster, else from the default kubeconfig. `build_reconciler` receives the
    client. With `handle_signals`, the first SIGTERM or SIGINT stops gracefully and a second
    one cancels at once.
    """
    if settings.kubeconfig is not None or settings.context is not None:
        client = await KubeClient.from_kubeconfig(settings.kubeconfig, settings.context)
    else:
        client = await KubeClient.from_config()
    try:
        operator = Operator(client, build_reconciler(client), settings)
        done = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        installed: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            if not done.is_set():
                log(_logger, logging.INFO, "shutting down", signal=sig.name)
                done.set()
            elif main is not None:
                main.cancel()

        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, on_signal, sig)
                    installed.append(sig)
        try:
            await operator.run(done)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
    finally:
        await client.close()
