"""The `tgi` runtime: Hugging Face text-generation-inference (`text-generation-launcher`).

TGI shards a model over the GPUs of one node (`--num-shard`, the plan's tensor parallel size)
and has no way to span nodes, so a plan that needs several nodes is refused (`UnsupportedWorkload`)
rather than deployed broken. Its token limits are two numbers where the plan has one: the whole
sequence (`--max-total-tokens`) is the plan's maximum model length, and a prompt may use all of
it but one token (`--max-input-tokens`), the least TGI accepts for a reply.

LoRA adapters are loaded at start (`--lora-adapters name=/mnt/adapter/name,...`) and chosen
per request with `adapter_id`; TGI applies them at full strength. The `tgi` section of the
inference config adds launcher flags kaito does not set (for example `max-concurrent-requests`),
merged in the container by kaito-launch. The model hub token (`HF_TOKEN` from the workspace's
model access secret) is set by the reconciler.

The client is the `text_generation` package's `AsyncClient`, which lives in the `tgi` extra; it
is imported when a client is made, and its absence is an error that names the extra.
"""

from __future__ import annotations

import warnings
from typing import Any

from kaito.presets import Preset
from kaito.runtimes._common import (
    HttpClient,
    configured_image,
    http_get,
    import_extra,
    launcher_source,
    pinned_revision,
    probes,
    require_distinct_adapters,
    require_full_strength,
    require_single_node,
    server_container,
)
from kaito.runtimes._protocol import (
    INFERENCE_PORT,
    InferenceClient,
    InferenceRequest,
    InferenceServerError,
    InferenceWorkload,
    RuntimeContext,
)

__all__ = ["DEFAULT_IMAGE", "TGIClient", "TGIRuntime"]

DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"
HEALTH_PATH = "/health"
CONFIG_SECTION = "tgi"
TGI_DTYPES = ("float16", "bfloat16")
"""The dtypes `--dtype` accepts; for others TGI picks the checkpoint's own."""
TGI_QUANTIZATIONS = (
    "awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin",
    "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8",
)  # fmt: skip
"""Checkpoint quantizations TGI can load (its `--quantize` methods)."""


class TGIRuntime:
    """Serves presets with text-generation-inference. Options: `image`, `registry`."""

    name = "tgi"

    def __init__(self, context: RuntimeContext | None = None) -> None:
        self.context = context or RuntimeContext()

    def supports(self, preset: Preset) -> bool:
        """The preset lists `tgi` and its weights are stored in a format TGI loads."""
        return preset.supports_runtime(self.name) and (
            preset.quantization is None or preset.quantization in TGI_QUANTIZATIONS
        )

    def default_image(self, preset: Preset) -> str:
        return configured_image(self.context, DEFAULT_IMAGE)

    def launcher_args(self, request: InferenceRequest) -> list[str]:
        """`text-generation-launcher`'s command line for this request."""
        plan = request.plan
        shards = plan.tensor_parallel_size
        command = [
            "text-generation-launcher",
            "--model-id", request.model_source,
            "--port", str(INFERENCE_PORT),
            "--num-shard", str(shards),
            "--sharded", "true" if shards > 1 else "false",
            "--max-input-tokens", str(max(plan.max_model_len - 1, 1)),
            "--max-total-tokens", str(plan.max_model_len),
        ]  # fmt: skip
        if plan.dtype in TGI_DTYPES:
            command += ["--dtype", plan.dtype]
        revision = pinned_revision(request)
        if revision:
            command += ["--revision", revision]
        if request.adapters:
            command += ["--lora-adapters", ",".join(f"{a.name}={a.path}" for a in request.adapters)]
        return command

    def inference_workload(self, request: InferenceRequest) -> InferenceWorkload:
        require_single_node(self.name, request.plan)
        require_distinct_adapters(request.adapters)
        require_full_strength(self.name, request.adapters)
        launch = ["exec"]
        if request.config_path:
            launch += ["--config", request.config_path, "--section", CONFIG_SECTION]
        container = server_container(
            request,
            command=["python3", "-c", launcher_source()],
            args=[*launch, "--", *self.launcher_args(request)],
            probe_specs=probes(request.preset, ready=http_get(HEALTH_PATH)),
            shm=request.plan.tensor_parallel_size > 1,
        )
        return InferenceWorkload(containers=(container,))

    def client(self, base_url: str) -> InferenceClient:
        return TGIClient(base_url)


class TGIClient(HttpClient):
    """Generation through `text_generation.AsyncClient`, health through `GET /health` (which
    that client does not offer). Needs the `tgi` extra."""

    def __init__(self, base_url: str, *, timeout: float = 300.0) -> None:
        super().__init__(base_url, timeout=timeout)
        module = import_extra("text_generation", "text-generation", "tgi")
        with warnings.catch_warnings():
            # the package warns on every client it makes that its maintainers prefer another
            warnings.simplefilter("ignore", DeprecationWarning)
            self._client: Any = module.AsyncClient(self.base_url, timeout=int(timeout))

    async def health(self) -> bool:
        return await self.answers_ok(HEALTH_PATH)

    async def chat(self, prompt: str, *, max_new_tokens: int = 128, **kwargs: Any) -> str:
        """The completion of `prompt`; `kwargs` are `AsyncClient.generate` arguments
        (`temperature`, `top_p`, `stop_sequences`, `do_sample`...)."""
        try:
            response = await self._client.generate(prompt, max_new_tokens=max_new_tokens, **kwargs)
        except InferenceServerError:
            raise
        except Exception as exc:
            # text_generation raises its own error classes, and aiohttp's for the transport
            raise InferenceServerError(f"{self.base_url}: {exc}") from exc
        return str(response.generated_text)
