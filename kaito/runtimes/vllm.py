"""The `vllm` runtime: vLLM's OpenAI-compatible server, on one node or across several.

vLLM is the runtime that takes the planner's numbers literally: tensor parallelism over a node's
GPUs, pipeline parallelism over nodes, data parallelism for small models on multi-GPU nodes, the
maximum model length and the GPU memory share the plan was sized for. Those flags are fixed by
kaito; the `vllm` section of the workspace's inference config adds any other vLLM flag (for
example `enable-prefix-caching: true`). The merge happens in the container (kaito-launch), since
building the container spec reads no ConfigMap.

A model split over N nodes runs as one Ray cluster, with the same containers on every pod: the
pod whose index (`request.node_rank_env`) is 0 starts the Ray head, waits for the other N-1 pods
to join and starts the server with `--distributed-executor-backend ray`; the others run
`ray start --address=<leader>:6379 --block`. Their probes follow the role: the leader is
healthy when `/health` answers, a worker is ready when it can reach the Ray head (and is
restarted when `ray start` exits, not by a probe).

LoRA adapters are served under their names (`--lora-modules name=/mnt/adapter/name`); a
request picks one by setting `model` to the adapter's name. vLLM applies an adapter at full
strength, so a workspace asking for a weaker adapter is refused with a clear message.
"""

from __future__ import annotations

from typing import Any

from kaito.presets import Preset
from kaito.runtimes._common import (
    HttpClient,
    configured_image,
    exec_command,
    expect_text,
    http_get,
    is_multi_node,
    launcher_source,
    max_lora_rank,
    pinned_revision,
    probes,
    require_distinct_adapters,
    require_full_strength,
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
    UnsupportedWorkload,
)

__all__ = ["DEFAULT_IMAGE", "RAY_PORT", "OpenAIClient", "VLLMRuntime"]

DEFAULT_IMAGE = "vllm/vllm-openai:v0.12.0"
RAY_PORT = 6379
"""The Ray head's GCS port on the leader pod."""
JOIN_TIMEOUT_SECONDS = 900
"""How long the leader waits for the workers (and workers retry joining) before giving up."""
HEALTH_PATH = "/health"
CONFIG_SECTION = "vllm"


class VLLMRuntime:
    """Serves presets with vLLM. Options: `image`, `registry`, `max-lora-rank` (the largest
    LoRA rank adapters may have; default 64)."""

    name = "vllm"

    def __init__(self, context: RuntimeContext | None = None) -> None:
        self.context = context or RuntimeContext()
        self.max_lora_rank = max_lora_rank(self.name, self.context)

    def supports(self, preset: Preset) -> bool:
        return preset.supports_runtime(self.name)

    def default_image(self, preset: Preset) -> str:
        return configured_image(self.context, DEFAULT_IMAGE)

    def server_command(self, request: InferenceRequest) -> list[str]:
        """The command line of vLLM's OpenAI-compatible server for this request."""
        plan = request.plan
        command = [
            "python3", "-m", "vllm.entrypoints.openai.api_server",
            "--model", request.model_source,
            "--served-model-name", request.preset.name,
            "--port", str(INFERENCE_PORT),
            "--dtype", vllm_dtype(plan.dtype),
            "--max-model-len", str(plan.max_model_len),
            "--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}",
            "--tensor-parallel-size", str(plan.tensor_parallel_size),
        ]  # fmt: skip
        if is_multi_node(plan):
            command += [
                "--pipeline-parallel-size", str(plan.pipeline_parallel_size),
                "--distributed-executor-backend", "ray",
            ]  # fmt: skip
        if plan.data_parallel_size > 1:
            command += ["--data-parallel-size", str(plan.data_parallel_size)]
        revision = pinned_revision(request)
        if revision:
            command += ["--revision", revision, "--tokenizer-revision", revision]
        if request.adapters:
            command += [
                "--enable-lora",
                "--max-loras", str(len(request.adapters)),
                "--max-lora-rank", str(self.max_lora_rank),
                "--lora-modules", *(f"{a.name}={a.path}" for a in request.adapters),
            ]  # fmt: skip
        return command

    def inference_workload(self, request: InferenceRequest) -> InferenceWorkload:
        plan = request.plan
        require_distinct_adapters(request.adapters)
        require_full_strength(self.name, request.adapters)
        multi = is_multi_node(plan)
        launch = ["exec"]
        if request.config_path:
            launch += ["--config", request.config_path, "--section", CONFIG_SECTION]
        if multi:
            self._check_multi_node(request)
            launch += [
                "--rank-env", request.node_rank_env,
                "--ray-nodes", str(plan.pipeline_parallel_size),
                "--ray-leader", request.leader_address,
                "--ray-port", str(RAY_PORT),
                "--num-gpus", str(plan.gpus_per_node),
                "--join-timeout", str(JOIN_TIMEOUT_SECONDS),
            ]  # fmt: skip
        launcher = ["python3", "-c", launcher_source()]
        container = server_container(
            request,
            command=launcher,
            args=[*launch, "--", *self.server_command(request)],
            probe_specs=self._probes(request, launcher) if multi else self._probes_http(request),
            shm=multi or plan.gpus_per_node > 1,
            ports=[{"name": "ray-gcs", "containerPort": RAY_PORT, "protocol": "TCP"}]
            if multi
            else [],
        )
        return InferenceWorkload(
            containers=(container,),
            extra_ports=(("ray-gcs", RAY_PORT),) if multi else (),
        )

    def _check_multi_node(self, request: InferenceRequest) -> None:
        plan = request.plan
        if plan.replicas > 1:
            raise UnsupportedWorkload(
                f"the vllm runtime cannot run {plan.replicas} replicas of a model that spans "
                f"{plan.pipeline_parallel_size} nodes"
            )
        if not request.node_rank_env or not request.leader_address:
            raise ValueError(
                "a multi-node plan needs node_rank_env and leader_address in the request"
            )

    def _probes_http(self, request: InferenceRequest) -> dict[str, dict[str, Any]]:
        return probes(request.preset, ready=http_get(HEALTH_PATH))

    def _probes(self, request: InferenceRequest, launcher: list[str]) -> dict[str, dict[str, Any]]:
        def check(worker: str) -> dict[str, Any]:
            return exec_command(
                [
                    *launcher, "probe",
                    "--url", f"http://127.0.0.1:{INFERENCE_PORT}{HEALTH_PATH}",
                    "--rank-env", request.node_rank_env,
                    "--worker-check", worker,
                    "--leader", f"{request.leader_address}:{RAY_PORT}",
                ]
            )  # fmt: skip

        return probes(
            request.preset,
            ready=check("tcp"),
            live=check("none"),
            started=check("none"),
            timeout_seconds=10,
            extra_startup_seconds=JOIN_TIMEOUT_SECONDS,
        )

    def client(self, base_url: str) -> InferenceClient:
        return OpenAIClient(base_url)


class OpenAIClient(HttpClient):
    """A client of an OpenAI-compatible server (vLLM): `/health`, `/v1/models` and
    `/v1/completions`. `model` defaults to the first model the server lists (the base model)."""

    def __init__(self, base_url: str, *, model: str | None = None, timeout: float = 300.0) -> None:
        super().__init__(base_url, timeout=timeout)
        self.model = model

    async def health(self) -> bool:
        return await self.answers_ok(HEALTH_PATH)

    async def served_model(self) -> str:
        """The model requests name: the one given, else the first the server lists."""
        if self.model is None:
            listing = await self.request_json("GET", "/v1/models")
            models = listing.get("data") if isinstance(listing, dict) else None
            if not models:
                raise InferenceServerError(f"{self.base_url}/v1/models lists no model")
            self.model = expect_text(models, 0, "id")
        return self.model

    async def chat(self, prompt: str, *, max_new_tokens: int = 128, **kwargs: Any) -> str:
        """The completion of `prompt`; `kwargs` are OpenAI completion fields (`temperature`,
        `top_p`, `stop`, or `model` to pick an adapter)."""
        body = {
            "model": kwargs.pop("model", None) or await self.served_model(),
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            **kwargs,
        }
        answer = await self.request_json("POST", "/v1/completions", body)
        return expect_text(answer, "choices", 0, "text")
