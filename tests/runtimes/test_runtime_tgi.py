"""The `tgi` runtime: text-generation-launcher's command line for one GPU and a sharded node,
adapters, the config merge, what it refuses (multi-node plans, weaker adapters, weight formats
TGI cannot load), and its client: the error naming the `tgi` extra when `text_generation` is
missing, and, where the extra is installed, generation against a stand-in TGI server."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_runtime_helpers import (
    LLAMA70,
    LLAMA70_HF_ID,
    LLAMA70_REVISION,
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
from kaito.runtimes.tgi import DEFAULT_IMAGE, TGIClient, TGIRuntime

pytestmark = pytest.mark.timeout(30)


def runtime(**options: str) -> TGIRuntime:
    return TGIRuntime(RuntimeContext(options))


def test_one_gpu_phi3_command() -> None:
    container = only_container(make_request(), runtime())
    assert container["command"] == ["python3", "-c", launcher_source()]
    assert container["args"] == [
        "exec", "--config", CONFIG_PATH, "--section", "tgi", "--",
        "text-generation-launcher",
        "--model-id", PHI3_HF_ID,
        "--port", "5000",
        "--num-shard", "1",
        "--sharded", "false",
        "--max-input-tokens", "4095",
        "--max-total-tokens", "4096",
        "--dtype", "float16",
        "--revision", PHI3_REVISION,
    ]  # fmt: skip
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/mnt/config", "readOnly": True}
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": 5000, "scheme": "HTTP"}
    assert container["startupProbe"]["failureThreshold"] == 82
    assert "env" not in container  # HF_TOKEN comes from the reconciler


def test_multi_gpu_llama_70b_is_sharded_over_the_node() -> None:
    container = only_container(make_request(LLAMA70, "Standard_ND96asr_v4"), runtime())
    assert after_dashes(container["args"]) == [
        "text-generation-launcher",
        "--model-id", LLAMA70_HF_ID,
        "--port", "5000",
        "--num-shard", "8",
        "--sharded", "true",
        "--max-input-tokens", "131071",
        "--max-total-tokens", "131072",
        "--dtype", "bfloat16",
        "--revision", LLAMA70_REVISION,
    ]  # fmt: skip
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_adapters_are_loaded_at_start_by_name() -> None:
    request = make_request(adapters=(adapter("sql"), adapter("chat")))
    args = runtime().launcher_args(request)
    assert args[-2:] == ["--lora-adapters", "sql=/mnt/adapter/sql,chat=/mnt/adapter/chat"]
    with pytest.raises(UnsupportedWorkload, match=r"tgi runtime applies LoRA adapters at full"):
        runtime().inference_workload(make_request(adapters=(adapter("sql", 0.5),)))


def test_float32_plans_leave_the_dtype_to_tgi() -> None:
    request = make_request()
    request = attrs.evolve(request, plan=attrs.evolve(request.plan, dtype="float32"))
    assert "--dtype" not in runtime().launcher_args(request)


def test_a_plan_across_nodes_is_refused() -> None:
    with pytest.raises(UnsupportedWorkload, match="tgi runtime serves a model from one node"):
        runtime().inference_workload(multi_node_request())


def test_supports_presets_that_list_tgi_in_a_format_it_loads() -> None:
    presets = builtin_presets()
    assert runtime().supports(presets[PHI3])
    assert not runtime().supports(presets["ministral-3-3b-instruct"])  # does not list tgi
    gpt_oss = attrs.evolve(presets["gpt-oss-20b"], runtimes=("hf", "tgi"))
    assert not runtime().supports(gpt_oss)  # mxfp4 weights
    awq = attrs.evolve(presets["qwen3-8b-awq"], runtimes=("hf", "tgi"))
    assert runtime().supports(awq)


def test_default_image_is_tgis_pinned_release() -> None:
    preset = builtin_presets()[PHI3]
    assert runtime().default_image(preset) == DEFAULT_IMAGE
    assert DEFAULT_IMAGE == "ghcr.io/huggingface/text-generation-inference:3.3.7"


def test_the_client_names_the_extra_when_text_generation_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "text_generation", None)  # as if not installed
    with pytest.raises(MissingExtra) as caught:
        runtime().client("http://127.0.0.1:5000")
    assert "pip install 'kaito[tgi]'" in str(caught.value)
    assert caught.value.extra == "tgi"
    assert isinstance(caught.value, ImportError)


# -- the client, where the tgi extra is installed -----------------------------------------------


@pytest.fixture
async def tgi_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for TGI: `/health`, and generation on `POST /` as the router answers it."""
    seen: list[dict[str, Any]] = []

    async def health(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if not body["inputs"]:
            return web.json_response(
                {
                    "error": "Input validation error: `inputs` cannot be empty",
                    "error_type": "validation",
                },
                status=422,
            )
        details = {"finish_reason": "length", "generated_tokens": 2, "prefill": [], "tokens": []}
        return web.json_response([{"generated_text": " world", "details": details}])

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/", generate)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


async def test_client_generates_through_text_generation(
    tgi_server: tuple[str, list[dict[str, Any]]],
) -> None:
    pytest.importorskip(
        "text_generation",
        reason="the tgi extra (text-generation) needs huggingface-hub<1, which cannot share an "
        "environment with the transformers 5 of the hf extra; CI installs hf",
    )
    url, seen = tgi_server
    client = runtime().client(url)
    assert isinstance(client, TGIClient)
    try:
        assert await client.health() is True
        assert await client.chat("Hello", max_new_tokens=2, temperature=0.5) == " world"
        with pytest.raises(InferenceServerError, match="cannot be empty"):
            await client.chat("")
    finally:
        await client.aclose()
    assert seen[0]["inputs"] == "Hello"
    assert seen[0]["parameters"]["max_new_tokens"] == 2
    assert seen[0]["parameters"]["temperature"] == 0.5
