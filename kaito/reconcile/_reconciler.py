"""`WorkspaceReconciler`: one pass from a workspace key to nodes, workload and status.

A pass reads the workspace and everything it owns, decides, and writes only differences:

1. validation (`validate_create`, or `validate_update` against the immutable fields first
   accepted, kept in the `workspace.kaito.io/accepted-spec` annotation), since a cluster may
   run without kaito's admission webhook; an invalid spec is reported and not retried
   (`TerminalError`) until the workspace changes;
2. the finalizer and the accepted-spec annotation, in one patch, on first sight;
3. the plan: preset, instance type (or, for bring-your-own nodes without one, what the
   provisioner reports the nodes offer), node count, and the runtime that will serve it;
4. nodes through the provisioner, which is idempotent and reports readiness;
5. once the nodes are ready, the inference ConfigMap, Service(s) and StatefulSet;
6. status, computed from what the cluster shows, written only when it changed, with an Event
   for every condition transition.

Deletion (the finalizer holds the workspace): the workspace's children are deleted explicitly
(the workload first, so no pod is left on a node being taken away), then the provisioner
releases the nodes, called again on later passes until it answers True, then the finalizer
goes. Each step finds its work from the cluster, so a crash anywhere and a re-run reach the same
end.

Tuning workspaces get their node the same way; once it is ready, the tuning config ConfigMap
(kaito's default unless `tuning.config` names one) and the Job `<ws>-tuning` are created. The
Job is created once and then only read (its pod template is immutable, and a finished Job must
not run again): JobStarted and WorkspaceSucceeded follow its status, and state ends Succeeded
or Failed. Deletion removes the Job (its pods go with it) before the nodes are released.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import attrs

from kaito.api import (
    ConditionType,
    FieldError,
    TuningMethod,
    Workspace,
    WorkspaceInvalid,
    format_timestamp,
    validate_create,
    validate_update,
)
from kaito.kube import (
    CONFIG_MAP,
    JOB,
    POD,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
    Client,
    NotFound,
    RawObject,
    ResourceKind,
)
from kaito.plugins import PluginError, Registry, default_registry
from kaito.presets import GpuSku, Plan, PlanError, PlanOptions, Preset, builtin_skus, plan
from kaito.provisioners import NodeDescriber, NodeRequest, Provisioner, ProvisionStatus
from kaito.reconcile._apply import (
    ForeignObject,
    apply,
    controlled_by,
    get_or_none,
    remove,
    with_spec_hash,
)
from kaito.reconcile._constants import (
    ACCEPTED_SPEC_ANNOTATION,
    FIELD_MANAGER,
    FINALIZER,
    REVISION_ANNOTATION,
    default_config_map_name,
    headless_service_name,
    service_name,
    statefulset_name,
    tuning_config_map_name,
    tuning_job_name,
    workspace_labels,
)
from kaito.reconcile._desired import (
    TEMPLATE_DISK_GIB,
    default_config_data,
    desired_config_map,
    desired_headless_service,
    desired_service,
    desired_statefulset,
    inference_request,
    is_multi_node,
    node_request,
    preset_image,
)
from kaito.reconcile._events import condition_event, record
from kaito.reconcile._protocol import Result, TerminalError
from kaito.reconcile._settings import ReconcilerSettings
from kaito.reconcile._status import (
    REASON_CONFIG_NOT_FOUND,
    REASON_INVALID_SPEC,
    REASON_NAME_CONFLICT,
    REASON_NODE_CLAIMS_NOT_READY,
    REASON_NODE_CLAIMS_READY,
    REASON_NODE_FACTS_UNKNOWN,
    REASON_NODES_READY,
    REASON_PLAN_FAILED,
    REASON_PROVISIONING,
    REASON_PROVISIONING_FAILED,
    REASON_RESOURCES_READY,
    REASON_UNSUPPORTED_RUNTIME,
    REASON_WAITING_FOR_NODES,
    Cond,
    inference_condition,
    render_conditions,
    state_for,
    transitions,
    workspace_ready,
)
from kaito.reconcile._tuning import (
    TUNING_CONFIG_KEY,
    desired_tuning_config_map,
    desired_tuning_job,
    tuning_conditions,
    tuning_config_key,
    tuning_image,
    tuning_success_message,
)
from kaito.runtimes import RUNTIME_ANNOTATION, InferenceWorkload, Runtime, RuntimeContext

_log = logging.getLogger(__name__)

RESOURCE_READY = ConditionType.RESOURCE_READY.value
NODE_CLAIM_READY = ConditionType.NODE_CLAIM_READY.value
NODES_READY = ConditionType.NODES_READY.value
INFERENCE_READY = ConditionType.INFERENCE_READY.value
JOB_STARTED = ConditionType.JOB_STARTED.value

NAME_CONFLICT_REQUEUE = 30.0
"""Seconds between checks while a foreign object holds a name kaito needs (it is not labelled
for the workspace, so its removal raises no watch event)."""

TUNING_RUNTIME = "hf"
"""The runtime whose image runs tuning jobs: it contains kaito and the training stack."""


class _Stop(Exception):
    """Ends a pass early with these conditions; `terminal` passes end in TerminalError."""

    def __init__(
        self,
        conditions: Sequence[Cond],
        *,
        terminal: bool,
        requeue_after: float | None = None,
    ) -> None:
        self.conditions = list(conditions)
        self.terminal = terminal
        self.requeue_after = requeue_after
        super().__init__("; ".join(c.message for c in self.conditions))


@attrs.frozen
class _Decision:
    """What the pass decided before touching nodes or workload."""

    request: NodeRequest
    preset: Preset | None = None
    plan: Plan | None = None
    runtime: Runtime | None = None
    image: str | None = None
    model_source: str | None = None
    workload: InferenceWorkload | None = None
    """The runtime's containers, built once while deciding so that a request the runtime
    cannot serve is reported before any node is provisioned for it."""


def _split_key(key: str) -> tuple[str, str]:
    namespace, sep, name = key.partition("/")
    if not sep:
        return "default", key
    if not name:
        raise ValueError(f"a workspace key is 'namespace/name', got {key!r}")
    return namespace or "default", name


def _errors_text(errors: Sequence[FieldError]) -> str:
    return "; ".join(str(e) for e in errors)


def accepted_spec(workspace: Workspace) -> dict[str, Any]:
    """The fields of a workspace that may not change after creation, as a document that
    `Workspace.from_dict` reads back (for `validate_update`)."""

    def dump(model: Any) -> Any:
        return model.model_dump(mode="json", by_alias=True, exclude_unset=True)

    doc: dict[str, Any] = {}
    resource = workspace.resource
    if resource is not None:
        fields: dict[str, Any] = {}
        for attr, wire in (
            ("count", "count"),
            ("instance_type", "instanceType"),
            ("label_selector", "labelSelector"),
            ("partition", "partition"),
        ):
            value = getattr(resource, attr)
            if value is not None:
                fields[wire] = dump(value) if hasattr(value, "model_dump") else value
        doc["resource"] = fields
    inference = workspace.inference
    if inference is not None:
        block: dict[str, Any] = {}
        if inference.preset is not None:
            block["preset"] = dump(inference.preset)
        if inference.template is not None:
            block["template"] = {}
        doc["inference"] = block
    tuning = workspace.tuning
    if tuning is not None:
        tblock: dict[str, Any] = {}
        if tuning.preset is not None:
            tblock["preset"] = dump(tuning.preset)
        if tuning.method is not None:
            tblock["method"] = tuning.method.value
        if tuning.input is not None and tuning.input.name is not None:
            tblock["input"] = {"name": tuning.input.name}
        doc["tuning"] = tblock
    return doc


def _accepted_text(workspace: Workspace) -> str:
    return json.dumps(accepted_spec(workspace), sort_keys=True, separators=(",", ":"))


def _accepted_workspace(workspace: Workspace) -> Workspace | None:
    """The workspace as first accepted (its immutable fields), if the annotation holds one."""
    text = (workspace.metadata.annotations or {}).get(ACCEPTED_SPEC_ANNOTATION)
    if not text:
        return None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            return None
        return Workspace.from_dict(
            {
                "apiVersion": workspace.api_version,
                "kind": workspace.kind,
                "metadata": {"name": workspace.metadata.name},
                **doc,
            }
        )
    except (ValueError, WorkspaceInvalid):
        # Not something kaito wrote; validate as on creation rather than trust it.
        return None


class WorkspaceReconciler:
    """Reconciles workspaces: `await reconciler.reconcile("namespace/name")`.

    `provisioner` gets the nodes (its kind should match `settings.auto_provisioning`: `byo`
    without auto-provisioning, `karpenter` or a cloud provisioner with it); `registry` supplies
    presets and runtimes (default: the installed plugins); `clock` stamps conditions and
    Events (default: the wall clock, UTC).
    """

    def __init__(
        self,
        client: Client,
        *,
        provisioner: Provisioner,
        registry: Registry | None = None,
        settings: ReconcilerSettings | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.provisioner = provisioner
        self.registry = registry if registry is not None else default_registry()
        self.settings = settings if settings is not None else ReconcilerSettings()
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self._runtimes: dict[str, Runtime] = {}

    # -- the entry point ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result:
        """One level-triggered pass over the workspace `namespace/name`; see the module doc."""
        namespace, name = _split_key(key)
        try:
            raw = await self.client.get(WORKSPACE, name, namespace=namespace)
        except NotFound:
            return Result()
        try:
            workspace = Workspace.from_dict(raw)
        except WorkspaceInvalid as exc:
            workspace = Workspace.model_validate({"metadata": raw.get("metadata") or {}})
            if workspace.metadata.deletion_timestamp:
                return await self._finalize(raw, workspace)
            message = _errors_text(exc.errors)
            await self._write_status(
                raw,
                workspace,
                [Cond(RESOURCE_READY, "False", REASON_INVALID_SPEC, message, warning=True)],
                failed=True,
            )
            raise TerminalError(message) from None
        if workspace.metadata.deletion_timestamp:
            return await self._finalize(raw, workspace)
        try:
            return await self._converge(raw, workspace)
        except _Stop as stop:
            await self._write_status(raw, workspace, stop.conditions, failed=stop.terminal)
            if stop.terminal:
                raise TerminalError(str(stop)) from None
            return Result(requeue_after=stop.requeue_after)

    # -- one pass -----------------------------------------------------------------------------

    async def _converge(self, raw: RawObject, workspace: Workspace) -> Result:
        self._validate(workspace)
        raw = await self._ensure_metadata(raw, workspace)
        workspace = Workspace.from_dict(raw)
        decision = await self._decide(workspace)
        status = await self.provisioner.provision(decision.request)
        conditions = _node_conditions(status)
        worker_nodes = list(status.nodes)
        target = decision.request.count

        if workspace.tuning is not None:
            try:
                tuning, job_failed = await self._tune(workspace, decision, status)
            except _Stop as stop:
                raise _Stop(
                    [*conditions, *stop.conditions],
                    terminal=stop.terminal,
                    requeue_after=stop.requeue_after,
                ) from None
            conditions.extend(tuning)
            await self._write_status(
                raw,
                workspace,
                conditions,
                failed=status.failed or job_failed,
                worker_nodes=worker_nodes,
                target=target,
            )
            return Result(requeue_after=None if status.ready else status.requeue_after)

        if not status.ready:
            conditions.append(await self._inference_while_waiting(workspace, status))
            await self._write_status(
                raw,
                workspace,
                conditions,
                failed=status.failed,
                worker_nodes=worker_nodes,
                target=target,
            )
            return Result(requeue_after=status.requeue_after)

        try:
            inference = await self._deploy(workspace, decision, status.nodes)
        except _Stop as stop:
            raise _Stop(
                [*conditions, *stop.conditions],
                terminal=stop.terminal,
                requeue_after=stop.requeue_after,
            ) from None
        conditions.append(inference)
        await self._write_status(
            raw, workspace, conditions, failed=False, worker_nodes=worker_nodes, target=target
        )
        return Result(requeue_after=status.requeue_after)

    def _validate(self, workspace: Workspace) -> None:
        old = _accepted_workspace(workspace)
        options: dict[str, Any] = {
            "presets": self.registry.presets,
            "auto_provisioning": self.settings.auto_provisioning,
            "private_data_urls": self.settings.private_data_urls,
        }
        if old is None:
            errors = validate_create(workspace, **options)
        else:
            errors = validate_update(old, workspace, **options)
        if errors:
            raise _Stop(
                [Cond(RESOURCE_READY, "False", REASON_INVALID_SPEC, _errors_text(errors), True)],
                terminal=True,
            )

    async def _ensure_metadata(self, raw: RawObject, workspace: Workspace) -> RawObject:
        """Add the finalizer and record the accepted immutable fields, in one patch; `raw`
        is updated to the stored object."""
        meta = raw.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        accepted = _accepted_text(workspace)
        current = (meta.get("annotations") or {}).get(ACCEPTED_SPEC_ANNOTATION)
        if FINALIZER in finalizers and current == accepted:
            return raw
        patch: dict[str, Any] = {
            "metadata": {
                "resourceVersion": meta.get("resourceVersion"),
                "annotations": {ACCEPTED_SPEC_ANNOTATION: accepted},
            }
        }
        if FINALIZER not in finalizers:
            patch["metadata"]["finalizers"] = [*finalizers, FINALIZER]
        updated = await self.client.patch(
            WORKSPACE,
            str(meta.get("name")),
            patch,
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
        )
        # In place: a pass that stops early writes status against this resourceVersion.
        raw.clear()
        raw.update(updated)
        return raw

    # -- deciding -----------------------------------------------------------------------------

    async def _decide(self, workspace: Workspace) -> _Decision:
        resource = workspace.resource
        instance_type = (resource.instance_type if resource is not None else None) or ""
        count = (resource.count if resource is not None else None) or 1
        inference = workspace.inference
        if inference is not None and inference.template is not None:
            sku = builtin_skus().get(instance_type) if instance_type else None
            return _Decision(
                request=node_request(
                    workspace,
                    instance_type=instance_type,
                    count=count,
                    gpus_per_node=sku.gpu_count if sku is not None else 0,
                    disk_gib=TEMPLATE_DISK_GIB,
                )
            )
        preset = self._preset(workspace)
        sku = await self._sku(workspace, instance_type, count)
        if workspace.tuning is not None:
            method: Literal["lora", "qlora"] = (
                "qlora" if workspace.tuning.method is TuningMethod.QLORA else "lora"
            )
            options = PlanOptions(node_count=1, mode="tuning", tuning_method=method)
        else:
            options = PlanOptions(node_count=resource.count if resource is not None else None)
        try:
            chosen = plan(preset, sku, options)
        except PlanError as exc:
            raise _Stop(
                [Cond(RESOURCE_READY, "False", REASON_PLAN_FAILED, str(exc), warning=True)],
                terminal=True,
            ) from None
        request = node_request(
            workspace,
            instance_type=instance_type,
            count=chosen.node_count,
            gpus_per_node=chosen.gpus_per_node,
            disk_gib=chosen.disk_gib,
        )
        if workspace.tuning is not None:
            return _Decision(request=request, preset=preset, plan=chosen)
        runtime = self._runtime_for(workspace, preset)
        image = preset_image(workspace, preset, runtime)
        model_source = self.settings.model_sources.get(preset.name)
        try:
            workload = runtime.inference_workload(
                inference_request(
                    workspace, preset=preset, plan=chosen, image=image, model_source=model_source
                )
            )
        except ValueError as exc:  # UnsupportedWorkload, and runtimes' own checks
            raise _Stop(
                [Cond(INFERENCE_READY, "False", REASON_UNSUPPORTED_RUNTIME, str(exc), True)],
                terminal=True,
            ) from None
        return _Decision(
            request=request,
            preset=preset,
            plan=chosen,
            runtime=runtime,
            image=image,
            model_source=model_source,
            workload=workload,
        )

    def _preset(self, workspace: Workspace) -> Preset:
        spec = None
        if workspace.inference is not None:
            spec = workspace.inference.preset
        elif workspace.tuning is not None:
            spec = workspace.tuning.preset
        found = self.registry.presets.get(spec.name) if spec is not None else None
        if found is None:  # validation reports unknown presets; this guards a changed catalog
            raise _Stop(
                [
                    Cond(
                        RESOURCE_READY,
                        "False",
                        REASON_INVALID_SPEC,
                        f"preset {spec.name if spec else '(none)'!r} is not in the catalog",
                        warning=True,
                    )
                ],
                terminal=True,
            )
        return found

    async def _sku(self, workspace: Workspace, instance_type: str, count: int) -> GpuSku:
        if instance_type:
            sku = builtin_skus().get(instance_type)
            if sku is None:
                raise _Stop(
                    [
                        Cond(
                            RESOURCE_READY,
                            "False",
                            REASON_INVALID_SPEC,
                            f"instance type {instance_type!r} is not in the SKU catalog",
                            warning=True,
                        )
                    ],
                    terminal=True,
                )
            return sku
        # Bring-your-own nodes without an instance type: size the model for what they offer.
        if not isinstance(self.provisioner, NodeDescriber):
            raise _Stop(
                [
                    Cond(
                        RESOURCE_READY,
                        "False",
                        REASON_NODE_FACTS_UNKNOWN,
                        f"the workspace names no instance type and the {self.provisioner.name} "
                        "provisioner cannot describe the nodes it would use, so the model "
                        "cannot be sized; run kaito with a provisioner that describes nodes "
                        "(byo), or with node auto-provisioning and resource.instanceType set",
                        warning=True,
                    )
                ],
                terminal=True,
            )
        probe = node_request(workspace, instance_type="", count=count, gpus_per_node=0, disk_gib=0)
        facts = await self.provisioner.describe_nodes(probe)
        sku = facts.sku()
        if sku is None:
            detail = "; ".join(facts.problems) or (
                "they do not report their GPUs; label them with NVIDIA GPU feature discovery "
                "(nvidia.com/gpu.product, .count, .memory, .compute.major and .compute.minor) "
                "or with a known node.kubernetes.io/instance-type"
            )
            nodes = ", ".join(facts.nodes) or "none found"
            raise _Stop(
                [
                    Cond(
                        RESOURCE_READY,
                        "False",
                        REASON_NODE_FACTS_UNKNOWN,
                        f"cannot size the model for the selected nodes ({nodes}): {detail}",
                        warning=True,
                    )
                ],
                terminal=False,
                requeue_after=self.settings.missing_config_requeue_seconds,
            )
        return sku

    def _runtime_for(self, workspace: Workspace, preset: Preset) -> Runtime:
        name = (workspace.metadata.annotations or {}).get(
            RUNTIME_ANNOTATION, self.settings.default_runtime
        )

        def unsupported(message: str) -> _Stop:
            return _Stop(
                [Cond(INFERENCE_READY, "False", REASON_UNSUPPORTED_RUNTIME, message, True)],
                terminal=True,
            )

        if not preset.supports_runtime(name):
            raise unsupported(
                f"preset {preset.name} cannot be served by runtime {name!r}; it supports "
                f"{', '.join(preset.runtimes)} (annotation {RUNTIME_ANNOTATION})"
            )
        runtime = self._runtime_named(name, INFERENCE_READY)
        if not runtime.supports(preset):
            raise unsupported(f"runtime {name!r} does not support preset {preset.name}")
        return runtime

    def _runtime_named(self, name: str, condition_type: str) -> Runtime:
        """The runtime plugin `name`, built once; unavailable is a terminal `condition_type`."""
        runtime = self._runtimes.get(name)
        if runtime is None:
            try:
                factory = self.registry.runtime(name)
                options = self.settings.runtime_options.get(name, {})
                runtime = factory(RuntimeContext(options=options))
            except (PluginError, ValueError) as exc:
                message = f"runtime {name!r} is not available: {exc}"
                raise _Stop(
                    [Cond(condition_type, "False", REASON_UNSUPPORTED_RUNTIME, message, True)],
                    terminal=True,
                ) from None
            self._runtimes[name] = runtime
        return runtime

    # -- the workload -------------------------------------------------------------------------

    async def _inference_while_waiting(self, workspace: Workspace, status: ProvisionStatus) -> Cond:
        """InferenceReady while the nodes are not ready: an existing workload is left as it is
        and reported; otherwise the workload waits for the nodes."""
        namespace = workspace.metadata.namespace or "default"
        live = await get_or_none(self.client, STATEFUL_SET, statefulset_name(workspace), namespace)
        if live is None:
            detail = status.message or status.reason or "the provisioner reports no progress"
            return Cond(
                INFERENCE_READY,
                "False",
                REASON_WAITING_FOR_NODES,
                f"the workload starts once the nodes are ready ({detail})",
            )
        revision = str(
            ((live.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "")
        )
        pods = await self._pods(workspace)
        return inference_condition(live, pods, revision=revision)

    async def _deploy(
        self, workspace: Workspace, decision: _Decision, nodes: Sequence[str]
    ) -> Cond:
        namespace = workspace.metadata.namespace or "default"
        uid = workspace.metadata.uid or ""
        inference = workspace.inference
        assert inference is not None
        config_data: dict[str, str] | None = None
        if inference.template is None:
            config_data = await self._config_data(workspace)
        workload = decision.workload
        multi = is_multi_node(decision.plan)
        try:
            statefulset = with_spec_hash(
                desired_statefulset(
                    workspace,
                    nodes=nodes,
                    preset=decision.preset,
                    plan=decision.plan,
                    runtime=decision.runtime,
                    image=decision.image,
                    model_source=decision.model_source,
                    config_data=config_data,
                )
            )
        except ValueError as exc:
            raise _Stop(
                [Cond(INFERENCE_READY, "False", REASON_UNSUPPORTED_RUNTIME, str(exc), True)],
                terminal=True,
            ) from None
        wanted: list[tuple[ResourceKind, RawObject]] = []
        if inference.template is None and not inference.config:
            wanted.append((CONFIG_MAP, with_spec_hash(desired_config_map(workspace))))
        wanted.append(
            (
                SERVICE,
                with_spec_hash(desired_service(workspace, workload=workload, plan=decision.plan)),
            )
        )
        if multi:
            wanted.append(
                (SERVICE, with_spec_hash(desired_headless_service(workspace, workload=workload)))
            )
        wanted.append((STATEFUL_SET, statefulset))

        live_statefulset: RawObject | None = None
        try:
            for kind, desired in wanted:
                name = str(desired["metadata"]["name"])
                live = await get_or_none(self.client, kind, name, namespace)
                result = await apply(self.client, kind, desired, live, owner_uid=uid)
                if kind is STATEFUL_SET:
                    live_statefulset = result
            if not multi:
                await remove(
                    self.client,
                    SERVICE,
                    headless_service_name(workspace),
                    namespace,
                    owner_uid=uid,
                )
        except ForeignObject as exc:
            raise _Stop(
                [Cond(INFERENCE_READY, "False", REASON_NAME_CONFLICT, str(exc), warning=True)],
                terminal=False,
                requeue_after=NAME_CONFLICT_REQUEUE,
            ) from None
        revision = str(statefulset["metadata"]["annotations"][REVISION_ANNOTATION])
        pods = await self._pods(workspace)
        return inference_condition(live_statefulset, pods, revision=revision)

    async def _tune(
        self, workspace: Workspace, decision: _Decision, status: ProvisionStatus
    ) -> tuple[list[Cond], bool]:
        """The tuning ConfigMap and Job: created once the nodes are ready, then only read.
        Returns JobStarted and WorkspaceSucceeded, and whether the Job failed."""
        namespace = workspace.metadata.namespace or "default"
        uid = workspace.metadata.uid or ""
        tuning = workspace.tuning
        assert tuning is not None

        def conflict(exc: ForeignObject) -> _Stop:
            return _Stop(
                [Cond(JOB_STARTED, "False", REASON_NAME_CONFLICT, str(exc), warning=True)],
                terminal=False,
                requeue_after=NAME_CONFLICT_REQUEUE,
            )

        job = await get_or_none(self.client, JOB, tuning_job_name(workspace), namespace)
        if job is not None and not controlled_by(job, uid):
            raise conflict(ForeignObject(JOB, namespace, tuning_job_name(workspace)))
        try:
            if not tuning.config:
                desired_map = with_spec_hash(desired_tuning_config_map(workspace))
                live_map = await get_or_none(
                    self.client, CONFIG_MAP, tuning_config_map_name(workspace), namespace
                )
                await apply(self.client, CONFIG_MAP, desired_map, live_map, owner_uid=uid)
            if job is None:
                if not status.ready:
                    detail = (
                        status.message or status.reason or "the provisioner reports no progress"
                    )
                    return [
                        Cond(
                            JOB_STARTED,
                            "False",
                            REASON_WAITING_FOR_NODES,
                            f"the tuning Job starts once the nodes are ready ({detail})",
                        )
                    ], False
                assert decision.preset is not None
                assert decision.plan is not None
                config_key = await self._tuning_config_key(workspace)
                runtime = self._runtime_named(TUNING_RUNTIME, JOB_STARTED)
                desired_job = with_spec_hash(
                    desired_tuning_job(
                        workspace,
                        nodes=status.nodes,
                        preset=decision.preset,
                        plan=decision.plan,
                        image=tuning_image(workspace, runtime.default_image(decision.preset)),
                        config_key=config_key,
                        model_source=self.settings.model_sources.get(decision.preset.name),
                    )
                )
                job = await apply(self.client, JOB, desired_job, None, owner_uid=uid)
        except ForeignObject as exc:
            raise conflict(exc) from None
        return tuning_conditions(job, await self._pods(workspace))

    async def _tuning_config_key(self, workspace: Workspace) -> str:
        """The file the tuning program reads from the config ConfigMap; the user's ConfigMap
        must exist and hold one YAML file (or `training_config.yaml`)."""
        tuning = workspace.tuning
        assert tuning is not None
        if not tuning.config:
            return TUNING_CONFIG_KEY
        namespace = workspace.metadata.namespace or "default"
        found = await get_or_none(self.client, CONFIG_MAP, tuning.config, namespace)
        key = None
        if found is not None:
            key = tuning_config_key({str(k): str(v) for k, v in (found.get("data") or {}).items()})
        if key is None:
            problem = (
                "does not exist"
                if found is None
                else f"has no {TUNING_CONFIG_KEY} and not exactly one other YAML file"
            )
            raise _Stop(
                [
                    Cond(
                        JOB_STARTED,
                        "False",
                        REASON_CONFIG_NOT_FOUND,
                        f"the tuning config ConfigMap {tuning.config} named in tuning.config "
                        f"{problem} in namespace {namespace}",
                        warning=True,
                    )
                ],
                terminal=False,
                requeue_after=self.settings.missing_config_requeue_seconds,
            )
        return key

    async def _config_data(self, workspace: Workspace) -> dict[str, str]:
        inference = workspace.inference
        assert inference is not None
        if not inference.config:
            return default_config_data()
        namespace = workspace.metadata.namespace or "default"
        found = await get_or_none(self.client, CONFIG_MAP, inference.config, namespace)
        if found is None:
            raise _Stop(
                [
                    Cond(
                        INFERENCE_READY,
                        "False",
                        REASON_CONFIG_NOT_FOUND,
                        f"the inference config ConfigMap {inference.config} named in "
                        f"inference.config does not exist in namespace {namespace}",
                        warning=True,
                    )
                ],
                terminal=False,
                requeue_after=self.settings.missing_config_requeue_seconds,
            )
        return {str(k): str(v) for k, v in (found.get("data") or {}).items()}

    async def _pods(self, workspace: Workspace) -> list[RawObject]:
        namespace = workspace.metadata.namespace or "default"
        labels = workspace_labels(namespace, workspace.metadata.name or "")
        items: list[RawObject] = []
        token: str | None = None
        while True:
            page = await self.client.list(
                POD, namespace=namespace, label_selector=labels, continue_token=token
            )
            items.extend(page.items)
            token = page.continue_token
            if not token:
                return items

    # -- status -------------------------------------------------------------------------------

    async def _write_status(
        self,
        raw: RawObject,
        workspace: Workspace,
        conditions: Sequence[Cond],
        *,
        failed: bool,
        worker_nodes: Sequence[str] | None = None,
        target: int | None = None,
    ) -> None:
        """Write the status if it differs from what is stored; record Events for transitions."""
        computed = list(conditions)
        if workspace.inference is not None:
            success = next(
                (c.message for c in computed if c.type == INFERENCE_READY and c.ok),
                "the workspace is ready",
            )
        elif workspace.tuning is not None:
            success = tuning_success_message(workspace)
        else:
            success = "the workspace is ready"
        computed.append(workspace_ready(computed, success_message=success))
        previous: dict[str, Any] = dict(raw.get("status") or {})
        before = list(previous.get("conditions") or [])
        now = format_timestamp(self._clock())
        status = dict(previous)
        status["conditions"] = render_conditions(
            before, computed, generation=workspace.metadata.generation, now=now
        )
        status["state"] = state_for(computed, failed=failed).value
        if worker_nodes is not None:
            status["workerNodes"] = list(worker_nodes)
        if target is not None:
            status["targetNodeCount"] = target
        if status == previous:
            return
        meta = raw.get("metadata") or {}
        updated = await self.client.patch_status(
            WORKSPACE,
            str(meta.get("name")),
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status},
            namespace=meta.get("namespace"),
            field_manager=FIELD_MANAGER,
        )
        raw["metadata"] = updated.get("metadata") or meta
        raw["status"] = updated.get("status") or status
        if self.settings.record_events:
            changed = transitions(before, computed)
            await record(self.client, [condition_event(workspace, c, now=now) for c in changed])

    # -- deletion -----------------------------------------------------------------------------

    async def _finalize(self, raw: RawObject, workspace: Workspace) -> Result:
        meta = raw.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER not in finalizers:
            return Result()
        namespace = workspace.metadata.namespace or "default"
        uid = workspace.metadata.uid or ""
        children_gone = True
        for kind, name in (
            (JOB, tuning_job_name(workspace)),
            (CONFIG_MAP, tuning_config_map_name(workspace)),
            (STATEFUL_SET, statefulset_name(workspace)),
            (SERVICE, service_name(workspace)),
            (SERVICE, headless_service_name(workspace)),
            (CONFIG_MAP, default_config_map_name(workspace)),
        ):
            gone = await remove(self.client, kind, name, namespace, owner_uid=uid)
            children_gone = children_gone and gone
        released = await self.provisioner.release(self._release_request(workspace))
        if not (children_gone and released):
            return Result(requeue_after=self.settings.release_requeue_seconds)
        await self.client.patch(
            WORKSPACE,
            str(meta.get("name")),
            {
                "metadata": {
                    "resourceVersion": meta.get("resourceVersion"),
                    "finalizers": [f for f in finalizers if f != FINALIZER],
                }
            },
            namespace=namespace,
            field_manager=FIELD_MANAGER,
        )
        return Result()

    def _release_request(self, workspace: Workspace) -> NodeRequest:
        """The request naming the workspace's nodes for `release`; sizes do not matter there,
        and the workspace may no longer plan (a changed catalog), so none is computed."""
        resource = workspace.resource
        return node_request(
            workspace,
            instance_type=(resource.instance_type if resource is not None else None) or "",
            count=(resource.count if resource is not None else None) or 1,
            gpus_per_node=0,
            disk_gib=0,
        )


def _node_conditions(status: ProvisionStatus) -> list[Cond]:
    """ResourceReady, NodeClaimReady (for provisioners that report it) and NodesReady."""
    nodes_message = status.message or f"{len(status.nodes)} nodes ready"
    if status.ready:
        conditions = [
            Cond(RESOURCE_READY, "True", REASON_RESOURCES_READY, nodes_message),
            Cond(NODES_READY, "True", REASON_NODES_READY, nodes_message),
        ]
    else:
        reason = status.reason or (
            REASON_PROVISIONING_FAILED if status.failed else REASON_PROVISIONING
        )
        message = status.message or "waiting for the provisioner"
        conditions = [
            Cond(RESOURCE_READY, "False", reason, message, warning=status.failed),
            Cond(NODES_READY, "False", reason, message, warning=status.failed),
        ]
    if status.node_claims_ready is not None:
        if status.node_claims_ready:
            conditions.append(
                Cond(NODE_CLAIM_READY, "True", REASON_NODE_CLAIMS_READY, "all NodeClaims are ready")
            )
        else:
            reason = (
                status.reason
                if status.reason and not status.ready
                else REASON_NODE_CLAIMS_NOT_READY
            )
            conditions.append(
                Cond(
                    NODE_CLAIM_READY,
                    "False",
                    reason,
                    status.message or "waiting for NodeClaims",
                    warning=status.failed,
                )
            )
    return conditions
