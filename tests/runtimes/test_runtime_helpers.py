"""Shared builders for the runtime tests (requests for a preset on an instance type, container
look-ups), and the checks every built-in runtime must pass alike."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from kaito.api import Workspace
from kaito.presets import PlanOptions, builtin_presets, builtin_skus, plan
from kaito.runtimes import (
    ADAPTERS_DIR,
    CONFIG_PATH,
    AdapterMount,
    Container,
    InferenceClient,
    InferenceRequest,
    MissingExtra,
    Runtime,
    RuntimeContext,
)
from kaito.runtimes.hf._runtime import HuggingFaceRuntime
from kaito.runtimes.tgi import TGIRuntime
from kaito.runtimes.triton import TritonRuntime
from kaito.runtimes.vllm import VLLMRuntime

pytestmark = pytest.mark.timeout(30)

LEADER = "ws-0.ws-headless.team-a.svc.cluster.local"
RANK_ENV = "KAITO_NODE_RANK"

PHI3 = "phi-3-mini-4k-instruct"
PHI3_HF_ID = "microsoft/Phi-3-mini-4k-instruct"
PHI3_REVISION = "0a67737cc96d2554230f90338b163bc6380a2a85"
LLAMA70 = "llama-3.3-70b-instruct"
LLAMA70_HF_ID = "meta-llama/Llama-3.3-70B-Instruct"
LLAMA70_REVISION = "6f6073b423013f6a7d4d9f39144961bfbfbc386b"


def workspace(preset: str, sku: str) -> Workspace:
    return Workspace.from_dict(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": "ws", "namespace": "team-a"},
            "resource": {"instanceType": sku},
            "inference": {"preset": {"name": preset}},
        }
    )


def adapter(name: str, strength: float = 1.0) -> AdapterMount:
    return AdapterMount(name=name, path=f"{ADAPTERS_DIR}/{name}", strength=strength)


def make_request(
    preset: str = PHI3,
    sku: str = "Standard_NC6s_v3",
    *,
    options: PlanOptions | None = None,
    model_source: str | None = None,
    adapters: tuple[AdapterMount, ...] = (),
    config_path: str = CONFIG_PATH,
    image: str = "example.test/server:1",
) -> InferenceRequest:
    """The request the reconciler would make for `preset` on `sku`; multi-node plans get the
    rank variable and leader address it sets."""
    chosen = builtin_presets()[preset]
    the_plan = plan(chosen, builtin_skus()[sku], options or PlanOptions())
    multi = the_plan.pipeline_parallel_size > 1
    return InferenceRequest(
        workspace=workspace(preset, sku),
        preset=chosen,
        plan=the_plan,
        model_source=model_source or chosen.hf_id or chosen.name,
        image=image,
        adapters=adapters,
        config_path=config_path,
        node_rank_env=RANK_ENV if multi else "",
        leader_address=LEADER if multi else "",
    )


def multi_node_request(**kwargs: Any) -> InferenceRequest:
    """llama-3.3-70b on single-A100 nodes: three pipeline stages."""
    return make_request(
        LLAMA70, "Standard_NC24ads_A100_v4", options=PlanOptions(allow_distributed=True), **kwargs
    )


def only_container(request: InferenceRequest, runtime: Runtime) -> Container:
    workload = runtime.inference_workload(request)
    assert len(workload.containers) == 1
    return workload.containers[0]


def after_dashes(args: list[str]) -> list[str]:
    """The command kaito-launch runs: what follows its `--`."""
    return args[args.index("--") + 1 :]


ALL_RUNTIMES: tuple[Callable[[RuntimeContext], Runtime], ...] = (
    HuggingFaceRuntime,
    VLLMRuntime,
    TGIRuntime,
    TritonRuntime,
)


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_keeps_the_shared_contract(factory: Callable[..., Runtime]) -> None:
    runtime = factory(RuntimeContext())
    assert isinstance(runtime, Runtime)
    request = make_request()
    container = only_container(request, runtime)
    assert container["name"] == "inference"
    assert container["image"] == "example.test/server:1"
    assert {"name": "http", "containerPort": 5000, "protocol": "TCP"} in container["ports"]
    assert {"name": "config", "mountPath": "/mnt/config", "readOnly": True} in container[
        "volumeMounts"
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["periodSeconds"] in (10, 20)
    workload = runtime.inference_workload(request)
    assert workload.service_ports == (("http", 80, 5000),)
    # pure: the same request gives the same containers
    assert runtime.inference_workload(request) == workload


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_mounts_adapters_only_when_there_are_some(
    factory: Callable[..., Runtime],
) -> None:
    runtime = factory(RuntimeContext())
    without = only_container(make_request(), runtime)
    assert all(m["name"] != "adapters" for m in without["volumeMounts"])
    with_adapters = only_container(make_request(adapters=(adapter("a"),)), runtime)
    assert {"name": "adapters", "mountPath": "/mnt/adapter"} in with_adapters["volumeMounts"]


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_leaves_out_the_config_mount_for_a_config_elsewhere(
    factory: Callable[..., Runtime],
) -> None:
    container = only_container(make_request(config_path=""), factory(RuntimeContext()))
    assert all(m["name"] != "config" for m in container.get("volumeMounts", []))
    assert "--config" not in container["args"]


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_refuses_adapters_named_twice(factory: Callable[..., Runtime]) -> None:
    request = make_request(adapters=(adapter("a"), adapter("a")))
    with pytest.raises(ValueError, match="given twice: a"):
        factory(RuntimeContext()).inference_workload(request)


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_takes_its_image_from_the_options(factory: Callable[..., Runtime]) -> None:
    preset = builtin_presets()[PHI3]
    default = factory(RuntimeContext()).default_image(preset)
    assert ":" in default.rsplit("/", 1)[-1], "the default image has a pinned tag"
    assert not default.endswith(":latest")
    chosen = factory(RuntimeContext({"image": "mine.test/x:2"})).default_image(preset)
    assert chosen == "mine.test/x:2"
    mirrored = factory(RuntimeContext({"registry": "mirror.test/ml/"})).default_image(preset)
    assert mirrored == "mirror.test/ml/" + default.rsplit("/", 1)[-1]


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
def test_every_runtime_supports_only_presets_that_list_it(
    factory: Callable[..., Runtime],
) -> None:
    runtime = factory(RuntimeContext())
    preset = builtin_presets()[PHI3]
    assert runtime.supports(preset)
    others = tuple(r for r in ("hf", "vllm", "tgi", "triton") if r != runtime.name)
    assert not runtime.supports(attrs.evolve(preset, runtimes=others))


EXTRA_MODULES = {"tgi": "text_generation", "triton": "tritonclient.http.aio"}


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("factory", ALL_RUNTIMES)
async def test_every_runtime_client_is_an_inference_client(
    factory: Callable[..., Runtime],
) -> None:
    runtime = factory(RuntimeContext())
    module = EXTRA_MODULES.get(runtime.name)
    if module is not None and not importable(module):
        with pytest.raises(MissingExtra, match=rf"pip install 'kaito\[{runtime.name}\]'"):
            runtime.client("http://127.0.0.1:1")
        return
    client = runtime.client("http://127.0.0.1:1")
    assert isinstance(client, InferenceClient)
    assert await client.health() is False  # nothing listens on port 1
    await client.aclose()


def test_importing_the_runtimes_stays_light() -> None:
    """The runtimes add no heavy import to `import kaito`: clients import theirs when made."""
    code = (
        "import sys, kaito; before = set(sys.modules); "
        "import kaito.runtimes.vllm, kaito.runtimes.tgi, kaito.runtimes.triton, "
        "kaito.runtimes.hf._runtime; heavy = [m for m in ('aiohttp', 'torch', 'transformers', "
        "'text_generation', 'tritonclient') if m in sys.modules and m not in before]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
