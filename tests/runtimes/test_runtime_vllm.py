"""The `vllm` runtime: vLLM's command line for one GPU, tensor and data parallel nodes and
multi-node pipelines (leader and worker roles, Ray ports, probes), adapters, what it refuses,
and its OpenAI client against a stand-in server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_runtime_helpers import (
    LEADER,
    LLAMA70,
    LLAMA70_HF_ID,
    LLAMA70_REVISION,
    PHI3,
    PHI3_HF_ID,
    PHI3_REVISION,
    RANK_ENV,
    adapter,
    after_dashes,
    make_request,
    multi_node_request,
    only_container,
)

from kaito.presets import builtin_presets
from kaito.runtimes import (
    CONFIG_PATH,
    InferenceServerError,
    RuntimeContext,
    UnsupportedWorkload,
)
from kaito.runtimes._common import launcher_source
from kaito.runtimes.vllm import DEFAULT_IMAGE, OpenAIClient, VLLMRuntime

pytestmark = pytest.mark.timeout(30)

SERVER = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def runtime(**options: str) -> VLLMRuntime:
    return VLLMRuntime(RuntimeContext(options))


def test_one_gpu_phi3_command() -> None:
    container = only_container(make_request(), runtime())
    assert container["command"] == ["python3", "-c", launcher_source()]
    assert container["args"] == [
        "exec", "--config", CONFIG_PATH, "--section", "vllm", "--",
        *SERVER,
        "--model", PHI3_HF_ID,
        "--served-model-name", PHI3,
        "--port", "5000",
        "--dtype", "float16",
        "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.84",
        "--tensor-parallel-size", "1",
        "--revision", PHI3_REVISION,
        "--tokenizer-revision", PHI3_REVISION,
    ]  # fmt: skip
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/mnt/config", "readOnly": True}
    ]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": 5000, "scheme": "HTTP"},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert container["startupProbe"]["failureThreshold"] == 82
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_multi_gpu_llama_70b_is_tensor_parallel_over_the_node() -> None:
    request = make_request(LLAMA70, "Standard_ND96asr_v4")
    container = only_container(request, runtime())
    assert after_dashes(container["args"]) == [
        *SERVER,
        "--model", LLAMA70_HF_ID,
        "--served-model-name", LLAMA70,
        "--port", "5000",
        "--dtype", "bfloat16",
        "--max-model-len", "131072",
        "--gpu-memory-utilization", "0.84",
        "--tensor-parallel-size", "8",
        "--revision", LLAMA70_REVISION,
        "--tokenizer-revision", LLAMA70_REVISION,
    ]  # fmt: skip
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert runtime().inference_workload(request).extra_ports == ()


def test_a_small_model_on_a_multi_gpu_node_runs_a_copy_per_gpu() -> None:
    command = runtime().server_command(make_request(PHI3, "Standard_NC24s_v3"))
    assert command[command.index("--tensor-parallel-size") + 1] == "1"
    assert command[command.index("--data-parallel-size") + 1] == "4"


def test_a_local_model_directory_is_not_pinned_to_a_revision() -> None:
    command = runtime().server_command(make_request(model_source="/models/phi-3"))
    assert command[command.index("--model") + 1] == "/models/phi-3"
    assert "--revision" not in command


def test_adapters_are_served_under_their_names() -> None:
    request = make_request(adapters=(adapter("sql"), adapter("chat")))
    command = runtime().server_command(request)
    assert command[command.index("--enable-lora") :] == [
        "--enable-lora",
        "--max-loras", "2",
        "--max-lora-rank", "64",
        "--lora-modules", "sql=/mnt/adapter/sql", "chat=/mnt/adapter/chat",
    ]  # fmt: skip
    ranked = runtime(**{"max-lora-rank": "16"}).server_command(request)
    assert ranked[ranked.index("--max-lora-rank") + 1] == "16"
    assert "--enable-lora" not in runtime().server_command(make_request())


def test_an_unknown_lora_rank_option_is_refused() -> None:
    with pytest.raises(ValueError, match="max-lora-rank option must be one of 1, 8, 16"):
        runtime(**{"max-lora-rank": "12"})


def test_adapter_strengths_below_one_are_refused() -> None:
    request = make_request(adapters=(adapter("a"), adapter("b", 0.3)))
    with pytest.raises(UnsupportedWorkload, match=r"full strength only; b \(0.3\)"):
        runtime().inference_workload(request)


# -- multi-node ---------------------------------------------------------------------------------


def test_multi_node_pods_start_through_the_ray_roles() -> None:
    request = multi_node_request()
    plan = request.plan
    assert (plan.node_count, plan.pipeline_parallel_size, plan.gpus_per_node) == (3, 3, 1)
    workload = runtime().inference_workload(request)
    (container,) = workload.containers
    args = container["args"]
    assert args[: args.index("--")] == [
        "exec", "--config", CONFIG_PATH, "--section", "vllm",
        "--rank-env", RANK_ENV,
        "--ray-nodes", "3",
        "--ray-leader", LEADER,
        "--ray-port", "6379",
        "--num-gpus", "1",
        "--join-timeout", "900",
    ]  # fmt: skip
    server = after_dashes(args)
    assert server[server.index("--tensor-parallel-size") :] == [
        "--tensor-parallel-size", "1",
        "--pipeline-parallel-size", "3",
        "--distributed-executor-backend", "ray",
        "--revision", LLAMA70_REVISION,
        "--tokenizer-revision", LLAMA70_REVISION,
    ]  # fmt: skip
    assert workload.extra_ports == (("ray-gcs", 6379),)
    assert {"name": "ray-gcs", "containerPort": 6379, "protocol": "TCP"} in container["ports"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_multi_node_probes_follow_the_pods_role() -> None:
    container = only_container(multi_node_request(), runtime())
    probe = ["python3", "-c", launcher_source(), "probe"]
    common = [
        "--url", "http://127.0.0.1:5000/health",
        "--rank-env", RANK_ENV,
    ]  # fmt: skip
    leader = ["--leader", f"{LEADER}:6379"]
    assert container["readinessProbe"] == {
        "exec": {"command": [*probe, *common, "--worker-check", "tcp", *leader]},
        "periodSeconds": 10,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }
    assert container["livenessProbe"]["exec"]["command"] == [
        *probe, *common, "--worker-check", "none", *leader
    ]  # fmt: skip
    # the leader may wait 15 minutes for the workers before it loads 131 GiB
    assert container["startupProbe"]["failureThreshold"] == 455 + 90


def test_leader_and_worker_commands_from_the_same_container(tmp_path: Path) -> None:
    """Run the container's launcher args with the rank of the leader, then of a worker, with a
    stand-in `ray` that logs and a stand-in server that prints its flags."""
    container = only_container(multi_node_request(config_path=""), runtime())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, body in (
        ("ray", f'echo "ray $*" >> "{log}"'),
        ("python3", f'echo "server $*" >> "{log}"'),
    ):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        script.chmod(0o755)
    ray_module = tmp_path / "py" / "ray"
    ray_module.mkdir(parents=True)
    (ray_module / "__init__.py").write_text(
        "def init(address=None): pass\n"
        "def nodes(): return [{'Alive': True}] * 3\n"
        "def shutdown(): pass\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(tmp_path / "py"),
    }
    for rank in ("0", "2"):
        done = subprocess.run(
            [sys.executable, "-c", container["command"][2], *container["args"]],
            env={**env, RANK_ENV: rank},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    leader_start, server, worker_join = log.read_text().splitlines()
    assert leader_start == "ray start --head --port=6379 --num-gpus=1"
    assert server.startswith("server -m vllm.entrypoints.openai.api_server --model ")
    assert server.endswith("--distributed-executor-backend ray " + " ".join(
        ["--revision", LLAMA70_REVISION, "--tokenizer-revision", LLAMA70_REVISION]
    ))  # fmt: skip
    assert worker_join == f"ray start --address={LEADER}:6379 --num-gpus=1 --block"


def test_a_multi_node_request_needs_the_rank_and_leader() -> None:
    request = attrs.evolve(multi_node_request(), leader_address="")
    with pytest.raises(ValueError, match="needs node_rank_env and leader_address"):
        runtime().inference_workload(request)


def test_supports_presets_that_list_vllm() -> None:
    presets = builtin_presets()
    assert runtime().supports(presets["gpt-oss-20b"])
    assert runtime().supports(presets["ministral-3-3b-instruct"])
    assert runtime().default_image(presets[PHI3]) == DEFAULT_IMAGE == "vllm/vllm-openai:v0.12.0"


# -- the client ---------------------------------------------------------------------------------


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for vLLM's server: `/health`, `/v1/models` and `/v1/completions`."""
    seen: list[dict[str, Any]] = []

    async def health(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"object": "list", "data": [{"id": PHI3, "object": "model"}, {"id": "sql"}]}
        )

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if body["model"] not in (PHI3, "sql"):
            error = {"message": f"The model `{body['model']}` does not exist.", "code": 404}
            return web.json_response({"error": error}, status=404)
        text = f"{body['model']}: {body['prompt']}"
        return web.json_response({"choices": [{"index": 0, "text": text}]})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_client_completes_with_the_served_model(
    openai_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = openai_server
    client = runtime().client(url)
    try:
        assert await client.health() is True
        assert await client.chat("Hi", max_new_tokens=5, temperature=0) == f"{PHI3}: Hi"
        assert await client.chat("Hi", model="sql") == "sql: Hi"
    finally:
        await client.aclose()
    assert seen == [
        {"model": PHI3, "prompt": "Hi", "max_tokens": 5, "temperature": 0},
        {"model": "sql", "prompt": "Hi", "max_tokens": 128},
    ]


async def test_client_reports_an_unknown_model(
    openai_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, _ = openai_server
    client = OpenAIClient(url, model="nope")
    try:
        with pytest.raises(InferenceServerError, match="The model `nope` does not exist") as err:
            await client.chat("Hi")
        assert err.value.status == 404
    finally:
        await client.aclose()


async def test_client_of_a_server_that_lists_no_model() -> None:
    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = OpenAIClient(str(server.make_url("")))
    try:
        with pytest.raises(InferenceServerError, match="lists no model"):
            await client.chat("Hi")
        assert await client.health() is False  # no /health route: 404
    finally:
        await client.aclose()
        await server.close()


def test_the_container_spec_is_plain_json() -> None:
    container = only_container(make_request(adapters=(adapter("a"),)), runtime())
    assert json.loads(json.dumps(container)) == container
