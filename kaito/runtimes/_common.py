"""What the built-in runtimes share: images, probes, mounts, plan checks and HTTP clients.

Every built-in runtime follows the same shape so that workspaces behave alike whatever serves
them: one container named `inference` listening on port 5000, the inference config mounted at
`/mnt/config` and adapters at `/mnt/adapter`, a memory-backed `/dev/shm` when several GPUs or
processes share tensors, and three probes on the server's health endpoint:

- a startup probe that gives the model time to download and load (10 minutes plus 30 seconds
  per GiB of weights, polled every 10 s), so a 140 GiB model is not killed while it loads;
- a readiness probe (every 10 s, 3 failures) that takes the pod out of the Service while the
  server cannot answer;
- a liveness probe (every 20 s, 3 failures) that restarts a server that stopped answering.

Images: a runtime's default image is the upstream project's public image at a pinned tag. The
operator can change it with two `RuntimeContext` options: `image` replaces it outright, and
`registry` pulls the same image name and tag from a mirror (`registry=mirror.example/ml` turns
`vllm/vllm-openai:v0.12.0` into `mirror.example/ml/vllm-openai:v0.12.0`).

The clients import aiohttp when first used, so importing a runtime stays cheap.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from kaito.runtimes._protocol import (
    ADAPTERS_DIR,
    ADAPTERS_VOLUME,
    CONFIG_DIR,
    CONFIG_VOLUME,
    INFERENCE_PORT,
    SHM_VOLUME,
    AdapterMount,
    Container,
    InferenceRequest,
    InferenceServerError,
    MissingExtra,
    RuntimeContext,
    UnsupportedWorkload,
)

if TYPE_CHECKING:
    import aiohttp

    from kaito.presets import Plan, Preset

SERVER_CONTAINER = "inference"
"""The name of the inference server's container in every built-in runtime."""
SHM_PATH = "/dev/shm"
PROBE_PERIOD_SECONDS = 10
STARTUP_BASE_SECONDS = 600
STARTUP_SECONDS_PER_GIB = 30
_GIB = 1024**3


# -- images -------------------------------------------------------------------------------------


def rebase_image(image: str, registry: str) -> str:
    """`image`'s last path component (name and tag) under `registry`."""
    return registry.rstrip("/") + "/" + image.rsplit("/", 1)[-1]


def configured_image(context: RuntimeContext, default: str) -> str:
    """The image a runtime runs: the `image` option, else `default` from the `registry` option
    if one is set, else `default`."""
    image = context.options.get("image", "").strip()
    if image:
        return image
    registry = context.options.get("registry", "").strip()
    return rebase_image(default, registry) if registry else default


# -- probes -------------------------------------------------------------------------------------


def startup_failure_threshold(preset: Preset, extra_seconds: float = 0) -> int:
    """Startup probe failures (10 s apart) allowed while the model downloads and loads, plus
    `extra_seconds` of waiting before that (e.g. for the other nodes of a multi-node model)."""
    seconds = STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * preset.weight_bytes / _GIB
    return math.ceil((seconds + extra_seconds) / PROBE_PERIOD_SECONDS)


def http_get(path: str, port: int = INFERENCE_PORT) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}}


def exec_command(command: Sequence[str]) -> dict[str, Any]:
    return {"exec": {"command": list(command)}}


def probes(
    preset: Preset,
    *,
    ready: Mapping[str, Any],
    live: Mapping[str, Any] | None = None,
    started: Mapping[str, Any] | None = None,
    timeout_seconds: int = 5,
    extra_startup_seconds: float = 0,
) -> dict[str, dict[str, Any]]:
    """The three probes of a server container. `ready`, `live` and `started` are probe handlers
    (`http_get(...)` or `exec_command(...)`); `live` and `started` default to `ready`."""
    return {
        "startupProbe": {
            **(started or ready),
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": timeout_seconds,
            "failureThreshold": startup_failure_threshold(preset, extra_startup_seconds),
        },
        "readinessProbe": {
            **ready,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": timeout_seconds,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            **(live or ready),
            "periodSeconds": 20,
            "timeoutSeconds": max(timeout_seconds, 10),
            "failureThreshold": 3,
        },
    }


# -- the container ------------------------------------------------------------------------------


def volume_mounts(request: InferenceRequest, *, shm: bool) -> list[dict[str, Any]]:
    """The config mount (when the config file is under `CONFIG_DIR`), the adapters mount (when
    there are adapters), and `/dev/shm` when `shm`."""
    mounts: list[dict[str, Any]] = []
    if request.config_path.startswith(CONFIG_DIR + "/"):
        mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True})
    if request.adapters:
        mounts.append({"name": ADAPTERS_VOLUME, "mountPath": ADAPTERS_DIR})
    if shm:
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    return mounts


def env_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def http_port(port: int = INFERENCE_PORT) -> dict[str, Any]:
    return {"name": "http", "containerPort": port, "protocol": "TCP"}


def server_container(
    request: InferenceRequest,
    *,
    command: Sequence[str],
    args: Sequence[str],
    probe_specs: Mapping[str, Mapping[str, Any]],
    shm: bool,
    env: Mapping[str, str] | None = None,
    ports: Sequence[Mapping[str, Any]] = (),
) -> Container:
    container: Container = {
        "name": SERVER_CONTAINER,
        "image": request.image,
        "command": list(command),
        "args": list(args),
        "ports": [http_port(), *(dict(p) for p in ports)],
    }
    if env:
        container["env"] = env_list(env)
    mounts = volume_mounts(request, shm=shm)
    if mounts:
        container["volumeMounts"] = mounts
    container.update({name: dict(spec) for name, spec in probe_specs.items()})
    return container


@functools.cache
def launcher_source() -> str:
    """The source of `kaito-launch` (`_launcher.py`), which containers run with `python3 -c`."""
    return resources.files("kaito.runtimes").joinpath("_launcher.py").read_text("utf-8")


# -- checks on the request ----------------------------------------------------------------------


def is_multi_node(plan: Plan) -> bool:
    """The model is split over several nodes (pipeline stages), one pod each."""
    return plan.pipeline_parallel_size > 1


def require_single_node(runtime: str, plan: Plan) -> None:
    if is_multi_node(plan):
        raise UnsupportedWorkload(
            f"the {runtime} runtime serves a model from one node, but the plan splits "
            f"{plan.preset} over {plan.pipeline_parallel_size} nodes of {plan.sku}; use the "
            "vllm runtime, or an instance type with more GPU memory"
        )


def require_full_strength(runtime: str, adapters: Sequence[AdapterMount]) -> None:
    partial = [a for a in adapters if a.strength != 1.0]
    if partial:
        listed = ", ".join(f"{a.name} ({a.strength:g})" for a in partial)
        raise UnsupportedWorkload(
            f"the {runtime} runtime applies LoRA adapters at full strength only; {listed} "
            "asks for less: remove the strength or use the hf runtime"
        )


def require_distinct_adapters(adapters: Sequence[AdapterMount]) -> None:
    names = [a.name for a in adapters]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"adapter names must be distinct; given twice: {', '.join(twice)}")


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for the largest LoRA rank (`--max-lora-rank`, `max_lora_rank`)."""
DEFAULT_MAX_LORA_RANK = 64


def max_lora_rank(runtime: str, context: RuntimeContext) -> int:
    """The `max-lora-rank` option (the largest rank adapters may have; vLLM reserves memory
    for it), default 64."""
    text = context.options.get("max-lora-rank", "").strip()
    if not text:
        return DEFAULT_MAX_LORA_RANK
    if not text.isdigit() or int(text) not in LORA_RANKS:
        raise ValueError(
            f"the {runtime} runtime's max-lora-rank option must be one of "
            f"{', '.join(map(str, LORA_RANKS))}, got {text!r}"
        )
    return int(text)


def strengths_json(adapters: Sequence[AdapterMount]) -> str:
    """`KAITO_ADAPTER_STRENGTHS`: a JSON object of adapter name to strength."""
    return json.dumps({a.name: a.strength for a in adapters}, sort_keys=True)


def vllm_dtype(dtype: str) -> str:
    """vLLM's `--dtype` for the plan's dtype; the fp8 dtypes describe stored weights (vLLM reads
    the quantization from the checkpoint), so they run as `auto`."""
    return dtype if dtype in ("float16", "bfloat16", "float32") else "auto"


def pinned_revision(request: InferenceRequest) -> str | None:
    """The preset's pinned revision, when the model comes from its Hugging Face repository."""
    preset = request.preset
    if preset.revision and preset.hf_id and request.model_source == preset.hf_id:
        return preset.revision
    return None


# -- clients ------------------------------------------------------------------------------------


def import_extra(module: str, package: str, extra: str) -> Any:
    """Import `module` from an optional extra, or raise `MissingExtra` naming the extra.

    A RuntimeError counts as missing too: tritonclient raises one instead of an ImportError
    when it was installed without the dependencies of its HTTP client.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError) as exc:
        raise MissingExtra(package, extra) from exc


def _error_message(body: Any, fallback: str) -> str:
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            value = body.get(key)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
            if isinstance(value, str) and value:
                return value
    return fallback


class HttpClient:
    """A JSON-over-HTTP client of one server, on an aiohttp session opened at first use."""

    def __init__(self, base_url: str, *, timeout: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        return self._session

    async def request_json(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer to `method path`; `InferenceServerError` for an error status, an
        answer that is not JSON, or a server that cannot be reached."""
        import aiohttp

        url = self.base_url + path
        try:
            async with self._open().request(method, url, json=body) as response:
                text = await response.text()
                try:
                    payload: Any = json.loads(text) if text else None
                except json.JSONDecodeError:
                    payload = None
                if response.status >= 400:
                    message = _error_message(payload, text.strip() or response.reason or "")
                    raise InferenceServerError(f"{method} {url}: {message}", response.status)
                if payload is None:
                    raise InferenceServerError(f"{method} {url}: the answer is not JSON")
                return payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InferenceServerError(f"{method} {url}: {exc or type(exc).__name__}") from exc

    async def answers_ok(self, path: str) -> bool:
        """Whether `GET path` answers 2xx (False for errors and unreachable servers)."""
        import aiohttp

        try:
            async with self._open().get(self.base_url + path) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def expect_text(payload: Any, *path: str | int) -> str:
    """`payload[path...]` as a string, or an `InferenceServerError` saying what was missing."""
    value = payload
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            where = "".join(f"[{s!r}]" for s in path)
            raise InferenceServerError(f"unexpected answer, no {where}: {payload!r}") from None
    if not isinstance(value, str):
        raise InferenceServerError(f"unexpected answer, not text: {value!r}")
    return value
