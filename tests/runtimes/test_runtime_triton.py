"""The `triton` runtime: Triton's command line and the vLLM model repository it serves (engine
arguments for one GPU, a tensor parallel node and a copy per GPU, adapters, the config merge),
the repository as the container writes it, probes, what it refuses, and its client: the error
naming the `triton` extra, and, where the extra is installed, a stand-in Triton server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_runtime_helpers import (
    LLAMA70,
    PHI3,
    PHI3_HF_ID,
    PHI3_REVISION,
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
    MissingExtra,
    RuntimeContext,
    UnsupportedWorkload,
)
from kaito.runtimes._common import launcher_source
from kaito.runtimes.triton import DEFAULT_IMAGE, MODEL_REPOSITORY, TritonClient, TritonRuntime

pytestmark = pytest.mark.timeout(30)

PHI3_CONFIG = (
    'name: "phi-3-mini-4k-instruct"\n'
    'backend: "vllm"\n'
    "instance_group [\n"
    "  {\n"
    "    count: 1\n"
    "    kind: KIND_MODEL\n"
    "  }\n"
    "]\n"
)


def runtime(**options: str) -> TritonRuntime:
    return TritonRuntime(RuntimeContext(options))


def launch_options(args: list[str]) -> dict[str, str]:
    before = args[1 : args.index("--")]
    return dict(zip(before[::2], before[1::2], strict=True))


def test_one_gpu_phi3_command_and_repository() -> None:
    container = only_container(make_request(), runtime())
    assert container["command"] == ["python3", "-c", launcher_source()]
    args = container["args"]
    assert args[0] == "triton-repo"
    options = launch_options(args)
    assert options == {
        "--repository": MODEL_REPOSITORY,
        "--model": PHI3,
        "--engine-args": options["--engine-args"],
        "--model-config": PHI3_CONFIG,
        "--config": CONFIG_PATH,
        "--section": "vllm",
    }
    assert json.loads(options["--engine-args"]) == {
        "model": PHI3_HF_ID,
        "tensor_parallel_size": 1,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.84,
        "dtype": "float16",
        "revision": PHI3_REVISION,
        "tokenizer_revision": PHI3_REVISION,
    }
    assert after_dashes(args) == [
        "tritonserver",
        f"--model-repository={MODEL_REPOSITORY}",
        "--http-port=5000",
        "--grpc-port=8001",
        "--metrics-port=8002",
    ]
    assert container["ports"] == [
        {"name": "http", "containerPort": 5000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
    ]
    # the Python backend needs shared memory even on one GPU
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/mnt/config", "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]


def test_probes_use_tritons_health_endpoints() -> None:
    container = only_container(make_request(), runtime())
    ready = {"path": "/v2/health/ready", "port": 5000, "scheme": "HTTP"}
    assert container["startupProbe"]["httpGet"] == ready
    assert container["startupProbe"]["failureThreshold"] == 82
    assert container["readinessProbe"]["httpGet"] == ready
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/v2/health/live",
        "port": 5000,
        "scheme": "HTTP",
    }


def test_multi_gpu_llama_70b_is_one_engine_over_eight_gpus() -> None:
    request = make_request(LLAMA70, "Standard_ND96asr_v4")
    engine = runtime().engine_args(request)
    assert (engine["tensor_parallel_size"], engine["max_model_len"], engine["dtype"]) == (
        8,
        131072,
        "bfloat16",
    )
    options = launch_options(only_container(request, runtime())["args"])
    assert "kind: KIND_MODEL" in options["--model-config"]


def test_a_small_model_on_a_multi_gpu_node_runs_an_engine_per_gpu() -> None:
    request = make_request(PHI3, "Standard_NC24s_v3")
    options = launch_options(only_container(request, runtime())["args"])
    assert "kind: KIND_GPU" in options["--model-config"]
    assert json.loads(options["--engine-args"])["tensor_parallel_size"] == 1


def test_adapters_enable_lora_and_name_their_directories() -> None:
    request = make_request(adapters=(adapter("sql"), adapter("chat")))
    options = launch_options(only_container(request, runtime())["args"])
    engine = json.loads(options["--engine-args"])
    assert (engine["enable_lora"], engine["max_loras"], engine["max_lora_rank"]) == (True, 2, 64)
    assert json.loads(options["--loras"]) == {
        "sql": "/mnt/adapter/sql",
        "chat": "/mnt/adapter/chat",
    }
    ranked = runtime(**{"max-lora-rank": "128"}).engine_args(request)
    assert ranked["max_lora_rank"] == 128
    with pytest.raises(UnsupportedWorkload, match="full strength only"):
        runtime().inference_workload(make_request(adapters=(adapter("sql", 0.0),)))


def test_the_container_writes_the_repository_then_starts_triton(tmp_path: Path) -> None:
    """Run the container's launcher args with a stand-in `tritonserver`, the repository moved
    under tmp_path, and an inference config that adds engine arguments."""
    config = tmp_path / "inference_config.yaml"
    config.write_text(
        "vllm:\n  max-model-len: 99\n  enforce-eager: true\n  max_num_seqs: 8\n", encoding="utf-8"
    )
    request = make_request(adapters=(adapter("sql"),), config_path=str(config))
    container = only_container(request, runtime())
    repository = tmp_path / "repository"
    args = [a.replace(MODEL_REPOSITORY, str(repository)) for a in container["args"]]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tritonserver").write_text('#!/bin/sh\necho "tritonserver $*"\n', encoding="utf-8")
    (bin_dir / "tritonserver").chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", container["command"][2], *args],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "tritonserver",
        f"--model-repository={repository}",
        "--http-port=5000",
        "--grpc-port=8001",
        "--metrics-port=8002",
    ]
    model = repository / PHI3
    assert (model / "config.pbtxt").read_text() == PHI3_CONFIG
    assert json.loads((model / "1" / "model.json").read_text()) == {
        "model": PHI3_HF_ID,
        "tensor_parallel_size": 1,
        "max_model_len": 4096,  # kaito's, not the config's 99
        "gpu_memory_utilization": 0.84,
        "dtype": "float16",
        "revision": PHI3_REVISION,
        "tokenizer_revision": PHI3_REVISION,
        "enable_lora": True,
        "max_loras": 1,
        "max_lora_rank": 64,
        "enforce_eager": True,
        "max_num_seqs": 8,
    }
    assert json.loads((model / "1" / "multi_lora.json").read_text()) == {"sql": "/mnt/adapter/sql"}
    assert "max_model_len is set by kaito" in done.stderr


def test_a_plan_across_nodes_is_refused() -> None:
    with pytest.raises(UnsupportedWorkload, match="triton runtime serves a model from one node"):
        runtime().inference_workload(multi_node_request())


def test_supports_presets_that_list_triton() -> None:
    presets = builtin_presets()
    assert runtime().supports(presets["gpt-oss-20b"])
    assert runtime().default_image(presets[PHI3]) == DEFAULT_IMAGE
    assert DEFAULT_IMAGE == "nvcr.io/nvidia/tritonserver:25.12-vllm-python-py3"


def test_the_client_names_the_extra_when_tritonclient_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("tritonclient", "tritonclient.http", "tritonclient.http.aio"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(MissingExtra) as caught:
        runtime().client("http://127.0.0.1:5000")
    assert "pip install 'kaito[triton]'" in str(caught.value)
    assert caught.value.extra == "triton"


# -- the client, where the triton extra is installed --------------------------------------------


@pytest.fixture
async def triton_server() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """A stand-in for Triton: health, the repository index, model readiness and generate."""
    seen: list[dict[str, Any]] = []
    state: dict[str, Any] = {"model_ready": True}

    async def ready(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def index(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            [
                {"name": "broken", "version": "1", "state": "UNAVAILABLE"},
                {"name": PHI3, "version": "1", "state": "READY"},
            ]
        )

    async def model_ready(request: web.Request) -> web.StreamResponse:
        ok = request.match_info["model"] == PHI3 and state["model_ready"]
        return web.Response(status=200 if ok else 400)

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if body["parameters"].get("temperature", 0) > 2:
            return web.json_response({"error": "temperature must be at most 2"}, status=400)
        text = f"answer to {body['text_input']}"
        return web.json_response({"model_name": PHI3, "text_output": text})

    app = web.Application()
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_post("/v2/repository/index", index)
    app.router.add_get("/v2/models/{model}/ready", model_ready)
    app.router.add_post("/v2/models/{model}/generate", generate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen, state
    finally:
        await server.close()


async def test_client_finds_the_model_and_generates(
    triton_server: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    pytest.importorskip("tritonclient.http.aio")
    url, seen, state = triton_server
    client = runtime().client(url)
    assert isinstance(client, TritonClient)
    try:
        assert await client.health() is True
        assert await client.chat("Hi", max_new_tokens=3, temperature=0.1) == "answer to Hi"
        with pytest.raises(InferenceServerError, match="temperature must be at most 2"):
            await client.chat("Hi", temperature=3)
        state["model_ready"] = False
        assert await client.health() is False
    finally:
        await client.aclose()
    assert seen[0] == {
        "text_input": "Hi",
        "exclude_input_in_output": True,
        "parameters": {"max_tokens": 3, "temperature": 0.1},
    }
