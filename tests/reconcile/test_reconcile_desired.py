"""The pure builders: StatefulSet, Services, ConfigMap and NodeRequest from a workspace.

The seed's phi-3 workspace on Standard_NC6s_v3 is pinned exactly (one GPU, the toleration,
the node affinity, the HF runtime's probes, the config volume); the other tests look at one
concern each: adapters, multi-node layout, custom templates, Service type, revisions.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from reconcile_helpers import (
    A100X2,
    LLAMA70,
    NC6,
    PHI3,
    containers,
    env_of,
    inference_doc,
    registry,
    seed,
    with_uid,
)

from kaito.api import Workspace
from kaito.presets import Plan, Preset, builtin_presets, builtin_skus, plan
from kaito.provisioners.karpenter import node_base_name
from kaito.reconcile import (
    DEFAULT_INFERENCE_CONFIG,
    REVISION_ANNOTATION,
    desired_config_map,
    desired_headless_service,
    desired_service,
    desired_statefulset,
    node_request,
)
from kaito.runtimes import RuntimeContext
from kaito.runtimes.hf._runtime import HuggingFaceRuntime

pytestmark = pytest.mark.timeout(30)

LABELS = {"kaito.sh/workspace": "workspace-phi-3-mini", "kaito.sh/workspacenamespace": "default"}
OWNER = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "name": "workspace-phi-3-mini",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


PHI3_ARGS = [
    "--model", "microsoft/Phi-3-mini-4k-instruct",
    "--served-model-name", PHI3,
    "--host", "0.0.0.0",
    "--port", "5000",
    "--dtype", "float16",
    "--max-model-len", "4096",
    "--adapters-dir", "/mnt/adapter",
    "--config", "/mnt/config/inference_config.yaml",
]  # fmt: skip
"""The HF server's flags for phi-3 on one V100 (no bfloat16 before Ampere: float16)."""


def _preset(name: str) -> Preset:
    return builtin_presets()[name]


def _plan(preset: str, sku: str) -> Plan:
    return plan(_preset(preset), builtin_skus()[sku])


def _phi(ws: Workspace, nodes: tuple[str, ...] = ("node-a",), **kw: Any) -> dict[str, Any]:
    return desired_statefulset(
        ws,
        nodes=nodes,
        preset=_preset(PHI3),
        plan=_plan(PHI3, NC6),
        runtime=HuggingFaceRuntime(RuntimeContext()),
        **kw,
    )


def test_seed_phi3_statefulset_is_exactly_this() -> None:
    ws = with_uid(seed("phi-3-inference.yaml"))
    sts = _phi(ws)
    revision = sts["metadata"]["annotations"][REVISION_ANNOTATION]
    health = {"httpGet": {"path": "/health", "port": 5000, "scheme": "HTTP"}}
    assert sts == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": "workspace-phi-3-mini",
            "namespace": "default",
            "labels": LABELS,
            "ownerReferences": [OWNER],
            "annotations": {REVISION_ANNOTATION: revision},
        },
        "spec": {
            "replicas": 1,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS, "annotations": {REVISION_ANNOTATION: revision}},
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "kubernetes.io/hostname",
                                                "operator": "In",
                                                "values": ["node-a"],
                                            },
                                            {"key": "apps", "operator": "In", "values": ["phi-3"]},
                                        ]
                                    }
                                ]
                            }
                        }
                    },
                    "tolerations": [
                        {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                    "containers": [
                        {
                            "name": "inference",
                            "image": HuggingFaceRuntime().default_image(_preset(PHI3)),
                            "command": ["python", "-m", "kaito.runtimes.hf"],
                            "args": PHI3_ARGS,
                            "ports": [{"name": "http", "containerPort": 5000, "protocol": "TCP"}],
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/mnt/config", "readOnly": True}
                            ],
                            "startupProbe": {
                                **health,
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                                "failureThreshold": 82,
                            },
                            "readinessProbe": {
                                **health,
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                                "failureThreshold": 3,
                            },
                            "livenessProbe": {
                                **health,
                                "periodSeconds": 20,
                                "timeoutSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "resources": {
                                "requests": {"nvidia.com/gpu": "1"},
                                "limits": {"nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {"name": "workspace-phi-3-mini-inference-config"},
                        }
                    ],
                },
            },
        },
    }


def test_builders_are_pure_and_deterministic() -> None:
    ws = with_uid(seed("phi-3-inference.yaml"))
    assert _phi(ws) == _phi(ws)
    assert desired_service(ws) == desired_service(ws)


def test_model_access_secret_becomes_hf_token_from_the_secret() -> None:
    doc = inference_doc(preset=PHI3)
    doc["inference"]["preset"]["presetOptions"] = {
        "modelAccessSecret": "hf-creds",
        "image": "registry.example/phi:1",
        "imagePullSecrets": ["pull-me"],
    }
    sts = _phi(with_uid(doc))
    main = containers(sts)[0]
    assert env_of(main)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-creds", "key": "HF_TOKEN"}}
    assert main["image"] == "registry.example/phi:1"
    assert sts["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "pull-me"}]


def test_adapters_get_init_containers_volumes_and_strengths() -> None:
    doc = inference_doc()
    doc["inference"]["adapters"] = [
        {
            "source": {
                "name": "adapter.one",
                "image": "registry.example/adapters/one:1",
                "imagePullSecrets": ["adapter-pull", "other-pull"],
            },
            "strength": "0.5",
        },
        {
            "source": {
                "name": "two",
                "volumeSource": {"persistentVolumeClaim": {"claimName": "pvc"}},
            }
        },
    ]
    sts = _phi(with_uid(doc))
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "adapter-adapter-one-" + init["name"].rsplit("-", 1)[1]
    # The serving image (it contains kaito) pulls the adapter artifact; the kubelet never does.
    assert init["image"] == containers(sts)[0]["image"]
    assert init["command"] == [
        "python",
        "-m",
        "kaito.oci",
        "pull",
        "registry.example/adapters/one:1",
        "/mnt/adapter/adapter.one",
        "--auth-file",
        "/mnt/adapter-secrets/adapter-pull/.dockerconfigjson",
        "--auth-file",  # the puller uses the first with the registry, as a kubelet would
        "/mnt/adapter-secrets/other-pull/.dockerconfigjson",
    ]
    assert init["volumeMounts"] == [
        {"name": "adapters", "mountPath": "/mnt/adapter"},
        {
            "name": "adapter-secret-adapter-pull",
            "mountPath": "/mnt/adapter-secrets/adapter-pull",
            "readOnly": True,
        },
        {
            "name": "adapter-secret-other-pull",
            "mountPath": "/mnt/adapter-secrets/other-pull",
            "readOnly": True,
        },
    ]
    assert "imagePullSecrets" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["adapter-secret-adapter-pull"] == {
        "name": "adapter-secret-adapter-pull",
        "secret": {"secretName": "adapter-pull"},
    }
    assert volumes["adapters"] == {"name": "adapters", "emptyDir": {}}
    assert volumes["adapter-two"] == {
        "name": "adapter-two",
        "persistentVolumeClaim": {"claimName": "pvc"},
    }
    main = containers(sts)[0]
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert mounts["/mnt/adapter"] == "adapters"
    assert mounts["/mnt/adapter/two"] == "adapter-two"
    strengths = json.loads(env_of(main)["KAITO_ADAPTER_STRENGTHS"])
    assert strengths == {"adapter.one": 0.5, "two": 1.0}
    assert [e["name"] for e in main["env"]].count("KAITO_ADAPTER_STRENGTHS") == 1


def test_changing_adapters_or_config_changes_the_revision() -> None:
    ws = with_uid(inference_doc())
    base = _phi(ws)["metadata"]["annotations"][REVISION_ANNOTATION]
    doc = inference_doc()
    doc["inference"]["adapters"] = [{"source": {"name": "a", "image": "r.example/a:1"}}]
    with_adapter = _phi(with_uid(doc))["metadata"]["annotations"][REVISION_ANNOTATION]
    config_a = _phi(ws, config_data={"inference_config.yaml": "a: 1"})
    config_b = _phi(ws, config_data={"inference_config.yaml": "a: 2"})
    revisions = {
        base,
        with_adapter,
        config_a["metadata"]["annotations"][REVISION_ANNOTATION],
        config_b["metadata"]["annotations"][REVISION_ANNOTATION],
    }
    assert len(revisions) == 4
    template = config_a["spec"]["template"]["metadata"]["annotations"]
    assert template[REVISION_ANNOTATION] == config_a["metadata"]["annotations"][REVISION_ANNOTATION]
    assert "workspace.kaito.io/config-hash" in template


def test_user_config_map_is_mounted_instead_of_the_default() -> None:
    sts = _phi(with_uid(inference_doc(config="my-config")))
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"] == {"name": "config", "configMap": {"name": "my-config"}}


def test_default_config_map_holds_settings_the_hf_server_accepts(tmp_path: Any) -> None:
    from kaito.runtimes.hf import parse_options

    ws = with_uid(seed("phi-3-inference.yaml"))
    cm = desired_config_map(ws)
    assert cm["metadata"]["name"] == "workspace-phi-3-mini-inference-config"
    assert cm["metadata"]["labels"] == LABELS
    assert cm["metadata"]["ownerReferences"] == [OWNER]
    assert cm["data"] == {"inference_config.yaml": DEFAULT_INFERENCE_CONFIG}
    path = tmp_path / "inference_config.yaml"
    path.write_text(cm["data"]["inference_config.yaml"])
    options = parse_options(["--model", "m", "--config", str(path)], environ={})
    assert (options.max_batch_size, options.max_queue, options.max_new_tokens) == (16, 256, 1024)


def test_service_is_port_80_to_5000_and_load_balancer_on_request() -> None:
    ws = with_uid(seed("phi-3-inference.yaml"))
    svc = desired_service(ws)
    assert svc["metadata"]["name"] == "workspace-phi-3-mini"
    assert svc["metadata"]["ownerReferences"] == [OWNER]
    assert svc["spec"] == {
        "type": "ClusterIP",
        "selector": LABELS,
        "ports": [{"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}],
    }
    doc = seed("phi-3-inference.yaml")
    doc["metadata"]["annotations"] = {"kaito.sh/service-type": "LoadBalancer"}
    assert desired_service(with_uid(doc))["spec"]["type"] == "LoadBalancer"


def test_template_workspace_deploys_the_template_as_given() -> None:
    template = {
        "metadata": {"labels": {"app": "mine"}},
        "spec": {
            "containers": [
                {"name": "server", "image": "registry.example/server:2", "args": ["--x"]}
            ],
            "nodeSelector": {"pool": "gpu"},
        },
    }
    doc = inference_doc("ws-tpl")
    doc["inference"] = {"template": template}
    ws = with_uid(doc)
    sts = desired_statefulset(ws, nodes=["node-a"])
    pod = sts["spec"]["template"]
    assert pod["spec"] == template["spec"]
    assert pod["metadata"]["labels"] == {
        "app": "mine",
        "kaito.sh/workspace": "ws-tpl",
        "kaito.sh/workspacenamespace": "default",
    }
    assert set(pod["metadata"]["annotations"]) == {REVISION_ANNOTATION}
    assert sts["spec"]["replicas"] == 1
    assert "serviceName" not in sts["spec"]
    edited = dict(template, spec={**template["spec"], "nodeSelector": {"pool": "other"}})
    doc["inference"] = {"template": edited}
    other = desired_statefulset(with_uid(doc), nodes=["node-a"])
    assert (
        other["metadata"]["annotations"][REVISION_ANNOTATION]
        != sts["metadata"]["annotations"][REVISION_ANNOTATION]
    )


def test_preset_workspace_without_its_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="preset, plan and runtime"):
        desired_statefulset(with_uid(inference_doc()), nodes=["n"])


def test_multi_node_model_gets_ranks_and_a_headless_service() -> None:
    runtime = registry().runtime("vllm")(RuntimeContext())
    doc = inference_doc("ws-llama", preset=LLAMA70, instance_type=A100X2)
    ws = with_uid(doc)
    the_plan = _plan(LLAMA70, A100X2)
    assert the_plan.node_count == 2
    assert the_plan.pipeline_parallel_size == 2
    sts = desired_statefulset(
        ws, nodes=["n0", "n1"], preset=_preset(LLAMA70), plan=the_plan, runtime=runtime
    )
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == "ws-llama-headless"
    main = containers(sts)[0]
    assert env_of(main)["KAITO_NODE_RANK"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    affinity = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["n0", "n1"]
    headless = desired_headless_service(ws)
    assert headless["metadata"]["name"] == "ws-llama-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    service = desired_service(ws, plan=the_plan)
    assert service["spec"]["selector"]["apps.kubernetes.io/pod-index"] == "0"


def test_single_node_plan_has_no_service_name_or_rank() -> None:
    sts = _phi(with_uid(inference_doc()))
    assert "serviceName" not in sts["spec"]
    assert "KAITO_NODE_RANK" not in env_of(containers(sts)[0])


def test_node_request_carries_labels_expressions_and_sizes() -> None:
    doc = inference_doc("ws-phi", namespace="team-a", labels={"apps": "phi-3"})
    doc["resource"]["labelSelector"]["matchExpressions"] = [
        {"key": "zone", "operator": "In", "values": ["z1"]}
    ]
    doc["resource"]["preferredNodes"] = ["node-x"]
    ws = with_uid(doc)
    request = node_request(ws, instance_type=NC6, count=2, gpus_per_node=1, disk_gib=80)
    assert request.labels == {
        "apps": "phi-3",
        "kaito.sh/workspace": "ws-phi",
        "kaito.sh/workspacenamespace": "team-a",
    }
    assert request.match_expressions == ({"key": "zone", "operator": "In", "values": ["z1"]},)
    assert request.preferred_nodes == ("node-x",)
    assert (request.count, request.gpus_per_node, request.disk_gib) == (2, 1, 80)
    assert request.workspace_uid == "uid-1"
    again = node_request(ws, instance_type=NC6, count=2, gpus_per_node=1, disk_gib=80)
    assert request.name == again.name
    assert request.name == node_base_name("team-a", "ws-phi"), "the provisioners' naming rule"
    assert request.name.startswith("ws")
    assert len(request.name) == 12
    other = node_request(
        with_uid(inference_doc("ws-phi", namespace="team-b")),
        instance_type=NC6,
        count=1,
        gpus_per_node=1,
        disk_gib=80,
    )
    assert other.name != request.name


@pytest.mark.parametrize("runtime_name", ["hf", "vllm", "tgi", "triton"])
def test_every_volume_a_runtime_mounts_exists_in_the_pod(runtime_name: str) -> None:
    doc = inference_doc("ws-multi-gpu", instance_type="Standard_NC24s_v3")
    doc["inference"]["adapters"] = [{"source": {"name": "a", "image": "r.example/a:1"}}]
    ws = with_uid(doc)
    runtime = registry().runtime(runtime_name)(RuntimeContext())
    the_plan = _plan(PHI3, "Standard_NC24s_v3")
    try:
        sts = desired_statefulset(
            ws, nodes=["n"], preset=_preset(PHI3), plan=the_plan, runtime=runtime
        )
    except ValueError as exc:  # a runtime may refuse e.g. partial adapter strengths
        pytest.fail(f"{runtime_name}: {exc}")
    pod = sts["spec"]["template"]["spec"]
    volumes = {v["name"] for v in pod.get("volumes") or []}
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for mount in container.get("volumeMounts") or []:
            assert mount["name"] in volumes, (runtime_name, container["name"], mount)


def test_a_runtime_mounting_an_unknown_volume_is_refused() -> None:
    class OddRuntime(HuggingFaceRuntime):
        def inference_workload(self, request: Any) -> Any:
            workload = super().inference_workload(request)
            (container,) = workload.containers
            container = {
                **container,
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
            return type(workload)(containers=(container,))

    with pytest.raises(ValueError, match="scratch"):
        desired_statefulset(
            with_uid(inference_doc()),
            nodes=["n"],
            preset=_preset(PHI3),
            plan=_plan(PHI3, NC6),
            runtime=OddRuntime(),
        )
