"""The objects a workspace should have, computed by pure functions.

Every builder here takes the workspace and the facts the reconciler has gathered (the plan, the
runtime, the nodes the provisioner reports ready, the inference config's data) and returns plain
JSON dicts, with no I/O. That split, in the manner of lightkube's `prepare_request`, is what
makes the reconciler level-triggered: the same inputs always give the same objects, so comparing
them with what exists decides every write, and a library user can render a workspace's objects
without a cluster (`desired_statefulset(ws, ...)`).

The pod template is the runtime's containers (image, command, probes, ports, environment)
wrapped in what the runtime must not decide:
- GPUs: `nvidia.com/gpu` requests and limits of `plan.gpus_per_node` on the serving container,
  a toleration of the GPU taint, and required node affinity to the workspace's ready nodes;
- the inference config ConfigMap at `/mnt/config`, and the adapters at `/mnt/adapter/<name>`,
  filled by one init container per image adapter (`python -m kaito.oci pull` in the serving
  image, with the adapter's pull secrets mounted under `/mnt/adapter-secrets`) or mounted from
  the adapter's volume, with their strengths in `KAITO_ADAPTER_STRENGTHS`;
- the model hub token from `presetOptions.modelAccessSecret` as `HF_TOKEN`;
- for a model split over several nodes, the pod's index as `KAITO_NODE_RANK` (the leader is 0)
  and a headless Service that gives every pod a stable DNS name.

`workspace.kaito.io/revision` on the StatefulSet and its pod template is a short hash of the
pod template: whatever rolls the pods (adapters, config, the user's template, image, plan,
nodes) changes it, and pods carry the revision they were created from, so status can tell
which revision is live.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kaito.api import AdapterSpec, PresetOptions, Workspace
from kaito.kube import RawObject
from kaito.presets import Plan, Preset
from kaito.provisioners import (
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    NodeRequest,
)
from kaito.reconcile._constants import (
    ADAPTER_STRENGTHS_ENV,
    CONFIG_HASH_ANNOTATION,
    HF_TOKEN_ENV,
    HOSTNAME_LABEL,
    NODE_RANK_ENV,
    POD_INDEX_LABEL,
    REVISION_ANNOTATION,
    SERVICE_TYPE_ANNOTATION,
    default_config_map_name,
    dns_label,
    headless_service_name,
    name_of,
    namespace_of,
    node_request_name,
    service_name,
    statefulset_name,
    workspace_labels,
)
from kaito.runtimes import (
    ADAPTERS_DIR,
    ADAPTERS_VOLUME,
    CONFIG_DIR,
    CONFIG_PATH,
    CONFIG_VOLUME,
    INFERENCE_PORT,
    SERVICE_PORT,
    SHM_VOLUME,
    AdapterMount,
    InferenceRequest,
    InferenceWorkload,
    Runtime,
)

CONFIG_KEY = CONFIG_PATH.rsplit("/", 1)[1]
"""The key of the inference config file in the ConfigMap (mounted at CONFIG_DIR)."""

DEFAULT_INFERENCE_CONFIG = """\
# kaito's default inference configuration, mounted at /mnt/config/inference_config.yaml.
# To change it, create a ConfigMap with your own inference_config.yaml in the workspace's
# namespace and name it in the workspace's inference.config. Each runtime reads its own
# section: transformers (hf), vllm (vllm and triton), tgi; flags kaito derives from the plan
# (parallelism, max model length, GPU memory share) are not taken from here.
transformers:
  # Requests generating at the same time (one continuous batch).
  max-batch-size: 16
  # Requests waiting for a slot in the batch; one more is answered 429.
  max-queue: 256
  # Most tokens one request may generate; also the default when a request sets none.
  max-new-tokens: 1024
"""
"""The data of the ConfigMap kaito creates when a workspace names no `inference.config`."""

TEMPLATE_DISK_GIB = 100
"""Node disk for workspaces with a custom pod template (no preset tells its size)."""

ADAPTER_SECRETS_DIR = "/mnt/adapter-secrets"
"""Where the pull secrets of image adapters are mounted, one directory per secret."""

DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
"""The key of a `kubernetes.io/dockerconfigjson` Secret."""

GPU_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": GPU_TAINT_KEY, "operator": "Equal", "value": GPU_TAINT_VALUE, "effect": "NoSchedule"},
    # GPU node pools of the clouds taint their nodes with the GPU resource name instead.
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
)


def short_hash(value: Any, length: int = 12) -> str:
    """A stable hash of a JSON-able value (keys sorted), as `length` hex characters."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ---------------------------------------------------------------------------------------------
# metadata


def owner_reference(workspace: Workspace) -> dict[str, Any]:
    """The ownerReference every namespaced child carries: the workspace, as its controller."""
    return {
        "apiVersion": workspace.api_version,
        "kind": workspace.kind,
        "name": name_of(workspace),
        "uid": workspace.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata_of(
    workspace: Workspace, name: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace_of(workspace),
        "labels": workspace_labels(namespace_of(workspace), name_of(workspace)),
        "ownerReferences": [owner_reference(workspace)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def labels_of(workspace: Workspace) -> dict[str, str]:
    return workspace_labels(namespace_of(workspace), name_of(workspace))


# ---------------------------------------------------------------------------------------------
# decisions shared by the builders


def is_multi_node(plan: Plan | None) -> bool:
    """Whether the model is split over several nodes (pipeline stages), which needs a headless
    Service and pod ranks. Independent replicas of a one-node model do not."""
    return plan is not None and plan.pipeline_parallel_size > 1


def replica_count(workspace: Workspace, plan: Plan | None) -> int:
    """Pods of the StatefulSet: one per node of the plan; for a custom template the
    workspace's `resource.count` (default 1)."""
    if plan is not None:
        return plan.node_count
    count = workspace.resource.count if workspace.resource is not None else None
    return count or 1


def preset_image(workspace: Workspace, preset: Preset, runtime: Runtime) -> str:
    """`inference.preset.presetOptions.image` if set, else the runtime's image for the preset."""
    options = _preset_options(workspace)
    if options is not None and options.image:
        return options.image
    return runtime.default_image(preset)


def _preset_options(workspace: Workspace) -> PresetOptions | None:
    inference = workspace.inference
    if inference is None or inference.preset is None:
        return None
    return inference.preset.preset_options


def adapter_mounts(workspace: Workspace) -> tuple[AdapterMount, ...]:
    """The adapters the server loads: name, directory under /mnt/adapter, strength."""
    mounts: list[AdapterMount] = []
    for adapter in _adapters(workspace):
        name = _adapter_name(adapter)
        mounts.append(AdapterMount(name, f"{ADAPTERS_DIR}/{name}", adapter.strength_value))
    return tuple(mounts)


def _adapters(workspace: Workspace) -> list[AdapterSpec]:
    inference = workspace.inference
    return list(inference.adapters or []) if inference is not None else []


def _adapter_name(adapter: AdapterSpec) -> str:
    source = adapter.source
    if source is None or not source.name:
        raise ValueError("every adapter needs source.name (validate the workspace first)")
    return str(source.name)


def leader_address(workspace: Workspace) -> str:
    """The DNS name of pod 0 behind the headless Service."""
    return (
        f"{statefulset_name(workspace)}-0.{headless_service_name(workspace)}."
        f"{namespace_of(workspace)}.svc.cluster.local"
    )


def inference_request(
    workspace: Workspace,
    *,
    preset: Preset,
    plan: Plan,
    image: str,
    model_source: str | None = None,
) -> InferenceRequest:
    """What the runtime is asked to build containers for."""
    multi = is_multi_node(plan)
    return InferenceRequest(
        workspace=workspace,
        preset=preset,
        plan=plan,
        model_source=model_source or preset.hf_id or preset.name,
        image=image,
        adapters=adapter_mounts(workspace),
        config_path=CONFIG_PATH,
        node_rank_env=NODE_RANK_ENV if multi else "",
        leader_address=leader_address(workspace) if multi else "",
    )


def node_request(
    workspace: Workspace,
    *,
    instance_type: str,
    count: int,
    gpus_per_node: int,
    disk_gib: int,
) -> NodeRequest:
    """The provisioner's request: the labels every node must carry (the workspace's
    labelSelector matchLabels plus kaito's workspace labels), the user's preferred nodes and
    `In` expressions, and the sizes from the plan. Its name is deterministic."""
    namespace, name = namespace_of(workspace), name_of(workspace)
    resource = workspace.resource
    selector = resource.label_selector if resource is not None else None
    labels = dict(selector.match_labels or {}) if selector is not None else {}
    labels.update(workspace_labels(namespace, name))
    expressions = tuple(
        {"key": req.key, "operator": req.operator, "values": list(req.values or [])}
        for req in ((selector.match_expressions or []) if selector is not None else [])
        if req.operator == "In"
    )
    preferred = tuple(resource.preferred_nodes or []) if resource is not None else ()
    return NodeRequest(
        workspace_namespace=namespace,
        workspace_name=name,
        workspace_uid=workspace.metadata.uid or "",
        name=node_request_name(namespace, name),
        instance_type=instance_type,
        count=count,
        gpus_per_node=gpus_per_node,
        disk_gib=disk_gib,
        labels=labels,
        preferred_nodes=preferred,
        match_expressions=expressions,
    )


# ---------------------------------------------------------------------------------------------
# ConfigMap and Services


def config_map_name(workspace: Workspace) -> str:
    """The inference config ConfigMap the pods mount: the user's, or kaito's default."""
    inference = workspace.inference
    if inference is not None and inference.config:
        return inference.config
    return default_config_map_name(workspace)


def desired_config_map(workspace: Workspace) -> RawObject:
    """The default inference config ConfigMap (`<ws>-inference-config`), for workspaces whose
    `inference.config` is empty."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata_of(workspace, default_config_map_name(workspace)),
        "data": default_config_data(),
    }


def default_config_data() -> dict[str, str]:
    """The data of kaito's default inference ConfigMap."""
    return {CONFIG_KEY: DEFAULT_INFERENCE_CONFIG}


def service_type(workspace: Workspace) -> str:
    """`LoadBalancer` when the workspace asks for it by annotation, else `ClusterIP`."""
    wanted = (workspace.metadata.annotations or {}).get(SERVICE_TYPE_ANNOTATION, "")
    return "LoadBalancer" if wanted.strip().lower() == "loadbalancer" else "ClusterIP"


def desired_service(
    workspace: Workspace,
    *,
    workload: InferenceWorkload | None = None,
    plan: Plan | None = None,
) -> RawObject:
    """The Service named after the workspace: port 80 -> 5000 (or the runtime's service
    ports), ClusterIP or LoadBalancer; for a multi-node model it selects the leader pod only."""
    ports = (
        workload.service_ports
        if workload is not None
        else (("http", SERVICE_PORT, INFERENCE_PORT),)
    )
    selector = labels_of(workspace)
    if is_multi_node(plan):
        selector[POD_INDEX_LABEL] = "0"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_of(workspace, service_name(workspace)),
        "spec": {
            "type": service_type(workspace),
            "selector": selector,
            "ports": [
                {"name": name, "port": port, "targetPort": target, "protocol": "TCP"}
                for name, port, target in ports
            ],
        },
    }


def desired_headless_service(
    workspace: Workspace, *, workload: InferenceWorkload | None = None
) -> RawObject:
    """`<ws>-headless`: stable DNS names for the pods of a multi-node model, published before
    they are ready (workers must find the leader while it waits for them)."""
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": INFERENCE_PORT, "targetPort": INFERENCE_PORT, "protocol": "TCP"}
    ]
    for name, port in workload.extra_ports if workload is not None else ():
        ports.append({"name": name, "port": port, "targetPort": port, "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata_of(workspace, headless_service_name(workspace)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": labels_of(workspace),
            "ports": ports,
        },
    }


# ---------------------------------------------------------------------------------------------
# the StatefulSet


def desired_statefulset(
    workspace: Workspace,
    *,
    nodes: Sequence[str],
    preset: Preset | None = None,
    plan: Plan | None = None,
    runtime: Runtime | None = None,
    image: str | None = None,
    model_source: str | None = None,
    config_data: Mapping[str, str] | None = None,
) -> RawObject:
    """The workload: one pod per node.

    A preset workspace needs `preset`, `plan` and `runtime` (the image defaults to the preset
    options' or the runtime's); a workspace with `inference.template` deploys that template as
    given, with kaito's labels added. `nodes` are the provisioner's ready nodes (the pods'
    required node affinity). `config_data` is the inference ConfigMap's data, whose hash rolls
    the pods when it changes (None: not known, not hashed).
    """
    inference = workspace.inference
    if inference is None:
        raise ValueError("only inference workspaces have a StatefulSet")
    if inference.template is not None:
        template = _template_pod(workspace, inference.template)
        replicas = replica_count(workspace, None)
        multi = False
    else:
        if preset is None or plan is None or runtime is None:
            raise ValueError("a preset workspace needs its preset, plan and runtime")
        chosen_image = image or preset_image(workspace, preset, runtime)
        request = inference_request(
            workspace, preset=preset, plan=plan, image=chosen_image, model_source=model_source
        )
        workload = runtime.inference_workload(request)
        template = _preset_pod(workspace, plan, workload, nodes, runtime.name)
        replicas = replica_count(workspace, plan)
        multi = is_multi_node(plan)
    annotations = template["metadata"].setdefault("annotations", {})
    if config_data is not None:
        annotations[CONFIG_HASH_ANNOTATION] = short_hash(dict(config_data))
    annotations.pop(REVISION_ANNOTATION, None)
    revision = short_hash(template)
    annotations[REVISION_ANNOTATION] = revision
    spec: dict[str, Any] = {
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": labels_of(workspace)},
        "template": template,
    }
    if multi:
        spec["serviceName"] = headless_service_name(workspace)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata_of(
            workspace, statefulset_name(workspace), {REVISION_ANNOTATION: revision}
        ),
        "spec": spec,
    }


def _template_pod(workspace: Workspace, template: Mapping[str, Any]) -> dict[str, Any]:
    """The user's pod template, with kaito's labels added and nothing else changed."""
    pod = copy.deepcopy(dict(template))
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not spec.get("containers"):
        raise ValueError("inference.template must be a pod template with spec.containers")
    metadata = pod.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    labels = dict(metadata.get("labels") or {})
    labels.update(labels_of(workspace))
    metadata["labels"] = labels
    pod["metadata"] = metadata
    return pod


def _preset_pod(
    workspace: Workspace,
    plan: Plan,
    workload: InferenceWorkload,
    nodes: Sequence[str],
    runtime_name: str,
) -> dict[str, Any]:
    if not workload.containers:
        raise ValueError(f"the {runtime_name} runtime returned no containers")
    containers = [copy.deepcopy(dict(c)) for c in workload.containers]
    init_containers = [copy.deepcopy(dict(c)) for c in workload.init_containers]
    adapters = _adapters(workspace)
    main = containers[0]
    adapter_inits, adapter_volumes = _adapter_parts(adapters, str(main.get("image", "")))

    set_gpus(main, plan.gpus_per_node)
    _merge_env(main, _kaito_env(workspace, adapters, is_multi_node(plan)))
    _ensure_mount(main, CONFIG_VOLUME, CONFIG_DIR, read_only=True)
    if adapters:
        _ensure_mount(main, ADAPTERS_VOLUME, ADAPTERS_DIR)
        for adapter in adapters:
            if adapter.source is not None and adapter.source.volume_source is not None:
                name = _adapter_name(adapter)
                _ensure_mount(main, dns_label("adapter", name), f"{ADAPTERS_DIR}/{name}")

    all_containers = adapter_inits + init_containers + containers
    volumes = _volumes(workspace, all_containers, adapter_volumes, runtime_name)
    options = _preset_options(workspace)
    pull_secrets = list(options.image_pull_secrets or []) if options is not None else []

    spec: dict[str, Any] = {
        "affinity": node_affinity(workspace, nodes),
        "tolerations": [dict(t) for t in GPU_TOLERATIONS],
        "containers": containers,
    }
    if adapter_inits or init_containers:
        spec["initContainers"] = adapter_inits + init_containers
    if volumes:
        spec["volumes"] = volumes
    unique_secrets = list(dict.fromkeys(pull_secrets))
    if unique_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in unique_secrets]
    return {"metadata": {"labels": labels_of(workspace)}, "spec": spec}


def set_gpus(container: dict[str, Any], gpus: int) -> None:
    resources = dict(container.get("resources") or {})
    for section in ("requests", "limits"):
        values = dict(resources.get(section) or {})
        values[GPU_RESOURCE] = str(gpus)
        resources[section] = values
    container["resources"] = resources


def _kaito_env(
    workspace: Workspace, adapters: Sequence[AdapterSpec], multi: bool
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    options = _preset_options(workspace)
    if options is not None and options.model_access_secret:
        env.append(
            {
                "name": HF_TOKEN_ENV,
                "valueFrom": {
                    "secretKeyRef": {"name": options.model_access_secret, "key": HF_TOKEN_ENV}
                },
            }
        )
    if adapters:
        strengths = {_adapter_name(a): a.strength_value for a in adapters}
        env.append({"name": ADAPTER_STRENGTHS_ENV, "value": json.dumps(strengths, sort_keys=True)})
    if multi:
        env.append(
            {
                "name": NODE_RANK_ENV,
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
            }
        )
    return env


def _merge_env(container: dict[str, Any], extra: Sequence[dict[str, Any]]) -> None:
    """Add kaito's variables; where the runtime set the same name, kaito's value wins."""
    if not extra:
        return
    names = {e["name"] for e in extra}
    env = [e for e in container.get("env") or [] if e.get("name") not in names]
    container["env"] = env + [dict(e) for e in extra]


def _ensure_mount(
    container: dict[str, Any], volume: str, path: str, *, read_only: bool = False
) -> None:
    mounts = list(container.get("volumeMounts") or [])
    if any(m.get("name") == volume or m.get("mountPath") == path for m in mounts):
        return
    mount: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    mounts.append(mount)
    container["volumeMounts"] = mounts


def _adapter_parts(
    adapters: Sequence[AdapterSpec], image: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Init containers for image adapters, and volumes for volume adapters and for the pull
    secrets of image adapters.

    An image adapter is pulled by `python -m kaito.oci pull` in the serving image (which
    contains kaito), not run as a container image: adapters are OCI artifacts that need not be
    runnable, and this way the kubelet never pulls them. Its pull secrets are mounted as docker
    config files and handed to the puller.
    """
    inits: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    for adapter in adapters:
        name = _adapter_name(adapter)
        source = adapter.source
        assert source is not None  # _adapter_name checked it
        target = f"{ADAPTERS_DIR}/{name}"
        if source.image:
            command = ["python", "-m", "kaito.oci", "pull", source.image, target]
            mounts: list[dict[str, Any]] = [{"name": ADAPTERS_VOLUME, "mountPath": ADAPTERS_DIR}]
            for secret in dict.fromkeys(source.image_pull_secrets or []):
                volume = dns_label("adapter-secret", secret)
                directory = f"{ADAPTER_SECRETS_DIR}/{secret}"
                mounts.append({"name": volume, "mountPath": directory, "readOnly": True})
                if not any(v["name"] == volume for v in volumes):
                    volumes.append({"name": volume, "secret": {"secretName": secret}})
                # Each secret's docker config; the puller uses the first with the registry.
                command += ["--auth-file", f"{directory}/{DOCKERCONFIGJSON_KEY}"]
            inits.append(
                {
                    "name": dns_label("adapter", name),
                    "image": image,
                    "command": command,
                    "volumeMounts": mounts,
                }
            )
        elif source.volume_source is not None:
            volume_spec = {"name": dns_label("adapter", name)}
            volume_spec.update(copy.deepcopy(source.volume_source))
            volumes.append(volume_spec)
    return inits, volumes


def _volumes(
    workspace: Workspace,
    containers: Sequence[Mapping[str, Any]],
    adapter_volumes: Sequence[dict[str, Any]],
    runtime_name: str,
) -> list[dict[str, Any]]:
    """A volume for every name the containers mount; a name kaito cannot provide is an error."""
    provided: dict[str, dict[str, Any]] = {
        CONFIG_VOLUME: {"name": CONFIG_VOLUME, "configMap": {"name": config_map_name(workspace)}},
        ADAPTERS_VOLUME: {"name": ADAPTERS_VOLUME, "emptyDir": {}},
        SHM_VOLUME: {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}},
    }
    for volume in adapter_volumes:
        provided[volume["name"]] = volume
    wanted: list[str] = []
    for container in containers:
        for mount in container.get("volumeMounts") or []:
            name = str(mount.get("name", ""))
            if name not in wanted:
                wanted.append(name)
    unknown = [n for n in wanted if n not in provided]
    if unknown:
        raise ValueError(
            f"the {runtime_name} runtime mounts volume(s) {', '.join(unknown)} that kaito does "
            f"not provide (it provides {', '.join(sorted(provided))})"
        )
    return [copy.deepcopy(provided[n]) for n in wanted]


def node_affinity(workspace: Workspace, nodes: Sequence[str]) -> dict[str, Any]:
    expressions: list[dict[str, Any]] = [
        {"key": HOSTNAME_LABEL, "operator": "In", "values": list(nodes)}
    ]
    resource = workspace.resource
    selector = resource.label_selector if resource is not None else None
    if selector is not None:
        for key, value in sorted((selector.match_labels or {}).items()):
            expressions.append({"key": key, "operator": "In", "values": [value]})
        for req in selector.match_expressions or []:
            term: dict[str, Any] = {"key": req.key, "operator": req.operator}
            if req.values:
                term["values"] = list(req.values)
            expressions.append(term)
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }
