"""The `hf` runtime: the container of kaito's transformers server for one- and multi-GPU plans,
adapters and strengths, probes, what it refuses, and its client against a stand-in server."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_runtime_helpers import (
    LLAMA70,
    PHI3,
    PHI3_HF_ID,
    adapter,
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
from kaito.runtimes.hf import ServerOptions, parse_options
from kaito.runtimes.hf._runtime import DEFAULT_IMAGE, HuggingFaceClient, HuggingFaceRuntime

pytestmark = pytest.mark.timeout(30)


def runtime(**options: str) -> HuggingFaceRuntime:
    return HuggingFaceRuntime(RuntimeContext(options))


def test_one_gpu_phi3_container() -> None:
    args = [
        "--model", PHI3_HF_ID,
        "--served-model-name", PHI3,
        "--host", "0.0.0.0",
        "--port", "5000",
        "--dtype", "float16",  # V100: no bfloat16
        "--max-model-len", "4096",
        "--adapters-dir", "/mnt/adapter",
        "--config", CONFIG_PATH,
    ]  # fmt: skip
    container = only_container(make_request(), runtime())
    assert container == {
        "name": "inference",
        "image": "example.test/server:1",
        "command": ["python", "-m", "kaito.runtimes.hf"],
        "args": args,
        "ports": [{"name": "http", "containerPort": 5000, "protocol": "TCP"}],
        "volumeMounts": [{"name": "config", "mountPath": "/mnt/config", "readOnly": True}],
        "startupProbe": {
            "httpGet": {"path": "/health", "port": 5000, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            # 10 minutes plus 30 s for each of the 7.1 GiB of weights, in 10 s steps
            "failureThreshold": 82,
        },
        "readinessProbe": {
            "httpGet": {"path": "/health", "port": 5000, "scheme": "HTTP"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": 5000, "scheme": "HTTP"},
            "periodSeconds": 20,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
    }


def test_the_server_reads_the_flags_the_runtime_writes(tmp_path: Path) -> None:
    config = tmp_path / "inference_config.yaml"
    config.write_text("transformers:\n  max-batch-size: 4\n  max-queue: 8\n", encoding="utf-8")
    request = make_request(adapters=(adapter("a"),), config_path=str(config))
    options = parse_options(runtime().server_args(request), environ={})
    assert options == ServerOptions(
        model=PHI3_HF_ID,
        served_model_name=PHI3,
        host="0.0.0.0",
        port=5000,
        dtype="float16",
        max_model_len=4096,
        adapters_dir="/mnt/adapter",
        config=str(config),
        # from the inference config: the runtime leaves them to it
        max_batch_size=4,
        max_queue=8,
    )


def test_batch_and_queue_sizes_are_left_to_the_inference_config() -> None:
    # flags would override the user's ConfigMap, where the server reads them from
    args = runtime().server_args(make_request())
    assert "--max-batch-size" not in args
    assert "--max-queue" not in args


def test_multi_gpu_llama_70b_spreads_over_the_node_with_shared_memory() -> None:
    container = only_container(make_request(LLAMA70, "Standard_ND96asr_v4"), runtime())
    args = container["args"]
    assert args[args.index("--dtype") + 1] == "bfloat16"  # A100
    assert args[args.index("--max-model-len") + 1] == "131072"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert container["startupProbe"]["failureThreshold"] == 455  # 131 GiB of weights


def test_adapters_are_read_from_the_adapters_dir_with_their_strengths() -> None:
    request = make_request(adapters=(adapter("b-adapter", 0.5), adapter("a-adapter")))
    container = only_container(request, runtime())
    assert container["env"] == [
        {
            "name": "KAITO_ADAPTER_STRENGTHS",
            "value": json.dumps({"a-adapter": 1.0, "b-adapter": 0.5}),
        }
    ]
    assert {"name": "adapters", "mountPath": "/mnt/adapter"} in container["volumeMounts"]
    assert "env" not in only_container(make_request(), runtime())


def test_a_local_model_directory_is_passed_as_it_is() -> None:
    container = only_container(make_request(model_source="/models/phi-3"), runtime())
    assert container["args"][:2] == ["--model", "/models/phi-3"]


def test_a_plan_across_nodes_is_refused() -> None:
    with pytest.raises(UnsupportedWorkload, match=r"splits llama-3\.3-70b-instruct over 3 nodes"):
        runtime().inference_workload(multi_node_request())


def test_supports_generative_architectures_only() -> None:
    preset = builtin_presets()[PHI3]
    assert runtime().supports(preset)
    assert runtime().supports(builtin_presets()["gemma-3-4b-instruct"])
    assert not runtime().supports(attrs.evolve(preset, architecture="BertForMaskedLM"))
    assert not runtime().supports(attrs.evolve(preset, runtimes=("vllm",)))


def test_default_image_is_kaitos_base_image() -> None:
    preset = builtin_presets()[PHI3]
    assert runtime().default_image(preset) == DEFAULT_IMAGE
    assert DEFAULT_IMAGE == "ghcr.io/kaito-project/kaito/kaito-base:0.1.0"
    assert runtime(registry="acr.test").default_image(preset) == "acr.test/kaito-base:0.1.0"


# -- the client ---------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def kaito_server() -> AsyncIterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """A stand-in for kaito's server on 127.0.0.1: `/health` and `POST /chat` as the real one
    answers them. Yields its URL, the /chat bodies received, and a dict to change its state."""
    seen: list[dict[str, Any]] = []
    state: dict[str, Any] = {"loaded": True}

    async def health(request: web.Request) -> web.StreamResponse:
        if state["loaded"]:
            return web.json_response({"status": "Healthy", "model": "phi-3"})
        return web.json_response({"status": "Loading"}, status=503)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if "prompt" not in body:
            return web.json_response({"detail": "give either 'prompt' or 'messages'"}, status=400)
        return web.json_response({"Result": f"echo: {body['prompt']}"})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/chat", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen, state
    finally:
        await server.close()


async def test_client_health_follows_the_servers(
    kaito_server: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    url, _, state = kaito_server
    client = runtime().client(url)
    try:
        assert await client.health() is True
        state["loaded"] = False
        assert await client.health() is False
    finally:
        await client.aclose()


async def test_client_chat_sends_the_legacy_body_and_returns_the_result(
    kaito_server: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    url, seen, _ = kaito_server
    client = runtime().client(url + "/")
    try:
        text = await client.chat("Hello", max_new_tokens=7, temperature=0.5)
    finally:
        await client.aclose()
    assert text == "echo: Hello"
    assert seen == [
        {
            "prompt": "Hello",
            "return_full_text": False,
            "generate_kwargs": {"max_new_tokens": 7, "temperature": 0.5},
        }
    ]


async def test_client_reports_the_servers_error(
    kaito_server: tuple[str, list[dict[str, Any]], dict[str, Any]],
) -> None:
    url, _, _ = kaito_server
    client = HuggingFaceClient(url)
    try:
        with pytest.raises(InferenceServerError, match="give either") as caught:
            await client.request_json("POST", "/chat", {"messages": []})
        assert caught.value.status == 400
        with pytest.raises(InferenceServerError) as missing:
            await client.request_json("GET", "/nowhere")
        assert missing.value.status == 404
    finally:
        await client.aclose()


async def test_client_of_an_unreachable_server() -> None:
    client = runtime().client("http://127.0.0.1:1")
    try:
        assert await client.health() is False
        with pytest.raises(InferenceServerError, match=re.escape("POST http://127.0.0.1:1/chat")):
            await client.chat("Hello")
    finally:
        await client.aclose()
