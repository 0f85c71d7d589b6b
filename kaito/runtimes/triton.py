"""The `triton` runtime: NVIDIA Triton Inference Server with its vLLM backend.

Triton serves models from a model repository, a directory per model holding `config.pbtxt` and
a numbered version directory. For the vLLM backend the version holds `model.json`, the vLLM
engine arguments (model, tensor_parallel_size, max_model_len, gpu_memory_utilization, dtype,
LoRA settings), and `multi_lora.json` naming each adapter's directory. The repository is
written at container start by kaito-launch into the container's own /tmp (it is small and
regenerated every start, so no volume is needed), merging in the `vllm` section of the inference
config for engine arguments kaito does not set, and then `tritonserver` runs on it with its HTTP
endpoint on port 5000.

The model is named after the preset. A model that fits one GPU on a multi-GPU node (the plan's
data parallelism) runs one engine per GPU (`KIND_GPU`); otherwise one engine spans the GPUs
given by tensor parallelism (`KIND_MODEL`, which the backend requires for that). Triton does not
span nodes here: such plans are refused.

Readiness is Triton's `/v2/health/ready` (every model loaded), liveness `/v2/health/live`. The
client uses `tritonclient.http.aio` (the `triton` extra, imported when a client is made) for
health and model discovery, and Triton's generate extension for text, since the vLLM backend is
decoupled and its HTTP `infer` endpoint does not serve decoupled models.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from kaito.presets import Plan, Preset
from kaito.runtimes._common import (
    HttpClient,
    configured_image,
    expect_text,
    http_get,
    import_extra,
    launcher_source,
    max_lora_rank,
    pinned_revision,
    probes,
    require_distinct_adapters,
    require_full_strength,
    require_single_node,
    server_container,
    vllm_dtype,
)
from kaito.runtimes._protocol import (
    INFERENCE_PORT,
    InferenceClient,
    InferenceRequest,
    InferenceServerError,
    InferenceWorkload,
    RuntimeContext,
)

__all__ = ["DEFAULT_IMAGE", "MODEL_REPOSITORY", "TritonClient", "TritonRuntime"]

DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:25.12-vllm-python-py3"
MODEL_REPOSITORY = "/tmp/kaito/model-repository"
GRPC_PORT = 8001
METRICS_PORT = 8002
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
CONFIG_SECTION = "vllm"


def model_config(name: str, plan: Plan) -> str:
    """The model's `config.pbtxt`: the vLLM backend, one engine per GPU or one for all."""
    kind = "KIND_GPU" if plan.data_parallel_size > 1 else "KIND_MODEL"
    return (
        f"name: {json.dumps(name)}\n"
        'backend: "vllm"\n'
        "instance_group [\n"
        "  {\n"
        "    count: 1\n"
        f"    kind: {kind}\n"
        "  }\n"
        "]\n"
    )


class TritonRuntime:
    """Serves presets with Triton's vLLM backend. Options: `image`, `registry`,
    `max-lora-rank` (the largest LoRA rank adapters may have; default 64)."""

    name = "triton"

    def __init__(self, context: RuntimeContext | None = None) -> None:
        self.context = context or RuntimeContext()
        self.max_lora_rank = max_lora_rank(self.name, self.context)

    def supports(self, preset: Preset) -> bool:
        return preset.supports_runtime(self.name)

    def default_image(self, preset: Preset) -> str:
        return configured_image(self.context, DEFAULT_IMAGE)

    def engine_args(self, request: InferenceRequest) -> dict[str, Any]:
        """The vLLM engine arguments of `model.json`."""
        plan = request.plan
        args: dict[str, Any] = {
            "model": request.model_source,
            "tensor_parallel_size": plan.tensor_parallel_size,
            "max_model_len": plan.max_model_len,
            "gpu_memory_utilization": plan.gpu_memory_utilization,
            "dtype": vllm_dtype(plan.dtype),
        }
        revision = pinned_revision(request)
        if revision:
            args.update(revision=revision, tokenizer_revision=revision)
        if request.adapters:
            args.update(
                enable_lora=True,
                max_loras=len(request.adapters),
                max_lora_rank=self.max_lora_rank,
            )
        return args

    def server_command(self) -> list[str]:
        return [
            "tritonserver",
            f"--model-repository={MODEL_REPOSITORY}",
            f"--http-port={INFERENCE_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
        ]

    def inference_workload(self, request: InferenceRequest) -> InferenceWorkload:
        require_single_node(self.name, request.plan)
        require_distinct_adapters(request.adapters)
        require_full_strength(self.name, request.adapters)
        name = request.preset.name
        launch = [
            "triton-repo",
            "--repository", MODEL_REPOSITORY,
            "--model", name,
            "--engine-args", json.dumps(self.engine_args(request)),
            "--model-config", model_config(name, request.plan),
        ]  # fmt: skip
        if request.adapters:
            launch += ["--loras", json.dumps({a.name: a.path for a in request.adapters})]
        if request.config_path:
            launch += ["--config", request.config_path, "--section", CONFIG_SECTION]
        container = server_container(
            request,
            command=["python3", "-c", launcher_source()],
            args=[*launch, "--", *self.server_command()],
            probe_specs=probes(
                request.preset, ready=http_get(READY_PATH), live=http_get(LIVE_PATH)
            ),
            # the Python backend hands requests to its stub process through shared memory
            shm=True,
            ports=[
                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            ],
        )
        return InferenceWorkload(containers=(container,))

    def client(self, base_url: str) -> InferenceClient:
        return TritonClient(base_url)


class TritonClient(HttpClient):
    """Health and model discovery through `tritonclient.http.aio`, text through the generate
    extension (`POST /v2/models/<model>/generate`). Needs the `triton` extra.

    `model` defaults to the first model the server's repository index reports READY.
    """

    def __init__(self, base_url: str, *, model: str | None = None, timeout: float = 300.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self._aio = import_extra("tritonclient.http.aio", "tritonclient", "triton")
        self.model = model
        self._triton: Any = None

    def _client(self) -> Any:
        # made on first use, inside the event loop: the client opens an aiohttp session
        if self._triton is None:
            parts = urlsplit(self.base_url)
            self._triton = self._aio.InferenceServerClient(
                url=parts.netloc, ssl=parts.scheme == "https", conn_timeout=self._timeout
            )
        return self._triton

    async def served_model(self) -> str:
        if self.model is None:
            try:
                index = await self._client().get_model_repository_index()
            except Exception as exc:
                raise InferenceServerError(f"{self.base_url}: {exc}") from exc
            ready = [m.get("name") for m in index or [] if m.get("state") == "READY"]
            if not ready or not isinstance(ready[0], str):
                raise InferenceServerError(f"{self.base_url} has no model that is ready")
            self.model = ready[0]
        return self.model

    async def health(self) -> bool:
        try:
            if not await self._client().is_server_ready():
                return False
            model = await self.served_model()
            return bool(await self._client().is_model_ready(model))
        except Exception:
            # tritonclient raises its own errors and aiohttp's alike; any of them means "no"
            return False

    async def chat(self, prompt: str, *, max_new_tokens: int = 128, **kwargs: Any) -> str:
        """The completion of `prompt` (without the prompt); `kwargs` are vLLM sampling
        parameters (`temperature`, `top_p`, `stop`, `lora_name`...)."""
        model = await self.served_model()
        body = {
            "text_input": prompt,
            "exclude_input_in_output": True,
            "parameters": {"max_tokens": max_new_tokens, **kwargs},
        }
        answer = await self.request_json("POST", f"/v2/models/{quote(model)}/generate", body)
        return expect_text(answer, "text_output")

    async def aclose(self) -> None:
        if self._triton is not None:
            await self._triton.close()
            self._triton = None
        await super().aclose()
