"""Lifecycle simulators: what kubelets, the scheduler, the workload controllers and Karpenter
would do, beside kaito's API-server emulator (or any cluster that lacks them).

The emulator stores objects exactly and does nothing else; these simulators give them a life,
driven by declarative stages in the manner of KWOK: a stage selects objects (kind, state,
labels, fields), waits a delay on a controllable clock, and applies an effect. Failures are
stages placed in front of the normal ones.

    async with Emulator(crds=[nodeclaim_crd()]) as emu:
        client = await KubeClient.from_kubeconfig(emu.write_kubeconfig(tmp / "kubeconfig"))
        config = SimulatorConfig(stages=[insufficient_capacity(Match(name="ws-big*"))])
        async with client, Simulators(client, config) as sims:
            await client.create(NODE_CLAIM, nodeclaim)
            await sims.idle()

Simulated: Karpenter NodeClaims (Launched, Registered, Initialized, Ready; a Node with GPU
capacity; termination), Node readiness and optional heartbeats, pod scheduling with
kube-scheduler's filters and messages, pods running, completing, failing, crash-looping or
failing to pull images, StatefulSets and Deployments (scaling, rolling updates, status), and
Jobs (completions, backoff limit, conditions).
"""

from kaito.kube.simulators._clock import Clock, ManualClock, RealClock
from kaito.kube.simulators._engine import PendingStage
from kaito.kube.simulators._match import Match, Requirement, field_values, parse_label_selector
from kaito.kube.simulators._nodes import (
    TERMINATION_FINALIZER,
    InstanceType,
    builtin_instance_types,
    insufficient_capacity,
    never_registers,
)
from kaito.kube.simulators._pods import crash_loop, image_pull_error, pod_failure
from kaito.kube.simulators._scheduling import Decision, schedule, unschedulable_message
from kaito.kube.simulators._simulators import Delays, SimulatorConfig, Simulators
from kaito.kube.simulators._stages import NOW, Delay, Delete, Effect, Patch, Stage, StageContext

__all__ = [
    "NOW",
    "TERMINATION_FINALIZER",
    "Clock",
    "Decision",
    "Delay",
    "Delays",
    "Delete",
    "Effect",
    "InstanceType",
    "ManualClock",
    "Match",
    "Patch",
    "PendingStage",
    "RealClock",
    "Requirement",
    "SimulatorConfig",
    "Simulators",
    "Stage",
    "StageContext",
    "builtin_instance_types",
    "crash_loop",
    "field_values",
    "image_pull_error",
    "insufficient_capacity",
    "never_registers",
    "parse_label_selector",
    "pod_failure",
    "schedule",
    "unschedulable_message",
]
