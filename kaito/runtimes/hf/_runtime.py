"""The `hf` runtime: kaito's own transformers server (`python -m kaito.runtimes.hf`) in a pod.

This is the runtime that works everywhere kaito does, the local mode on a laptop's CPU included:
it needs no special image beyond kaito's base image, loads any decoder-only transformers model
and applies LoRA adapters at the strengths the workspace asks for (`KAITO_ADAPTER_STRENGTHS`).

The container's command line carries what the plan decided (dtype, maximum model length) and
where things are mounted (adapters, the inference config). Batch size, queue length and the
token limit per request are deliberately *not* flags: the server reads them from the `transformers`
section of the inference config file, and a flag would override the user's ConfigMap (flags win
over the file in the server's precedence). A model larger than one GPU is spread over all the
node's GPUs by the server itself (accelerate's `device_map="auto"`), so a multi-GPU plan only
adds shared memory; a plan that needs several nodes is refused, since the server runs on one.
"""

from __future__ import annotations

from typing import Any

from kaito._version import __version__
from kaito.presets import Plan, Preset
from kaito.runtimes._common import (
    HttpClient,
    configured_image,
    expect_text,
    http_get,
    probes,
    require_distinct_adapters,
    require_single_node,
    server_container,
    strengths_json,
)
from kaito.runtimes._protocol import (
    ADAPTERS_DIR,
    INFERENCE_PORT,
    InferenceClient,
    InferenceRequest,
    InferenceWorkload,
    RuntimeContext,
)
from kaito.runtimes.hf import STRENGTHS_ENV

DEFAULT_IMAGE = f"ghcr.io/kaito-project/kaito/kaito-base:{__version__}"
"""kaito's base image: Python with kaito[hf] installed, no model weights."""
HEALTH_PATH = "/health"
SERVER_DTYPES = ("float32", "float16", "bfloat16")
"""Plan dtypes the server takes as they are; others (fp8 storage types) load as `auto`."""
_ARCHITECTURE_SUFFIXES = ("ForCausalLM", "ForConditionalGeneration")


class HuggingFaceRuntime:
    """Serves presets with kaito's transformers server. Options: `image`, `registry`."""

    name = "hf"

    def __init__(self, context: RuntimeContext | None = None) -> None:
        self.context = context or RuntimeContext()

    def supports(self, preset: Preset) -> bool:
        """The preset lists `hf`, and its architecture is a generative model the server can load
        with `AutoModelForCausalLM`."""
        return preset.supports_runtime(self.name) and preset.architecture.endswith(
            _ARCHITECTURE_SUFFIXES
        )

    def default_image(self, preset: Preset) -> str:
        return configured_image(self.context, DEFAULT_IMAGE)

    def server_args(self, request: InferenceRequest) -> list[str]:
        """The server's flags for this request (the container's `args`)."""
        plan: Plan = request.plan
        args = [
            "--model", request.model_source,
            "--served-model-name", request.preset.name,
            "--host", "0.0.0.0",
            "--port", str(INFERENCE_PORT),
            "--dtype", plan.dtype if plan.dtype in SERVER_DTYPES else "auto",
            "--max-model-len", str(plan.max_model_len),
            "--adapters-dir", ADAPTERS_DIR,
        ]  # fmt: skip
        if request.config_path:
            args += ["--config", request.config_path]
        return args

    def inference_workload(self, request: InferenceRequest) -> InferenceWorkload:
        require_single_node(self.name, request.plan)
        require_distinct_adapters(request.adapters)
        env = {STRENGTHS_ENV: strengths_json(request.adapters)} if request.adapters else {}
        health = http_get(HEALTH_PATH)
        container = server_container(
            request,
            command=["python", "-m", "kaito.runtimes.hf"],
            args=self.server_args(request),
            probe_specs=probes(request.preset, ready=health),
            shm=request.plan.gpus_per_node > 1,
            env=env,
        )
        return InferenceWorkload(containers=(container,))

    def client(self, base_url: str) -> InferenceClient:
        return HuggingFaceClient(base_url)


class HuggingFaceClient(HttpClient):
    """A client of kaito's server: `/health`, and the seed's `POST /chat` API."""

    async def health(self) -> bool:
        return await self.answers_ok(HEALTH_PATH)

    async def chat(self, prompt: str, *, max_new_tokens: int = 128, **kwargs: Any) -> str:
        """The completion of `prompt`; `kwargs` are transformers' `generate` arguments
        (`temperature`, `top_p`, `do_sample`...)."""
        body = {
            "prompt": prompt,
            "return_full_text": False,
            "generate_kwargs": {"max_new_tokens": max_new_tokens, **kwargs},
        }
        return expect_text(await self.request_json("POST", "/chat", body), "Result")
