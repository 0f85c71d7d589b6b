"""The runtime contract: how a model gets served.

A runtime knows one inference server (Hugging Face transformers, vLLM, TGI, Triton): which
image and command start it, which flags carry the plan's choices (tensor parallel size, maximum
model length, GPU memory utilization, dtype), which port it listens on and how to tell that it is
ready. It does not decide *where* the pods run or *how many* GPUs they get: the reconciler adds
resources, tolerations, node affinity, the config and adapter volumes around what the runtime
returns. Keeping the runtime to "containers, probes, ports and a client" is what lets the same
reconciler drive every server.

Runtimes are found through the `kaito.runtimes` entry-point group; each entry point loads a
factory that is called with a `RuntimeContext`.

Conventions every runtime keeps, so that workspaces behave alike whatever serves them:
- the server listens on `INFERENCE_PORT` (5000) and the Service maps port 80 to it;
- the model comes from `model_source` (a Hugging Face id, or a directory when the weights are
  baked into the image or mounted);
- adapters, when the runtime supports them, are read from `ADAPTERS_DIR`, one directory each;
- the inference configuration file (from the workspace's ConfigMap) is at `CONFIG_PATH`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from kaito.api import Workspace
    from kaito.presets import Plan, Preset

RUNTIME_ANNOTATION = "kaito.sh/runtime"
"""A workspace annotation naming the runtime to serve it with (`hf`, `vllm`, `tgi`, `triton`);
without it the operator's default runtime is used."""

INFERENCE_PORT = 5000
SERVICE_PORT = 80
ADAPTERS_DIR = "/mnt/adapter"
CONFIG_DIR = "/mnt/config"
CONFIG_FILE = "inference_config.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
CONFIG_VOLUME = "config"
"""The pod volume (the workspace's inference ConfigMap) that runtimes mount at `CONFIG_DIR`."""
ADAPTERS_VOLUME = "adapters"
"""The pod volume (an emptyDir filled by the adapter init containers) mounted at `ADAPTERS_DIR`."""
SHM_VOLUME = "dshm"
"""A memory-backed emptyDir the reconciler provides for runtimes that mount it at /dev/shm
(NCCL, PyTorch and Triton's Python backend exchange tensors through shared memory)."""

Container = dict[str, Any]
"""A Kubernetes container as JSON: `name`, `image`, `command`, `args`, `env`, `ports`, probes."""


class UnsupportedWorkload(ValueError):
    """The runtime cannot serve this request as asked: a plan it cannot lay out (spanning nodes
    with a single-node server), adapter strengths it cannot apply. The reconciler reports it as
    InferenceReady=False with reason `UnsupportedRuntime` and the message of this error."""


class MissingExtra(ImportError):
    """A runtime's client needs a package from an optional extra that is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"the {package!r} package is not installed; "
            f"install it with: pip install 'kaito[{extra}]'"
        )


class InferenceServerError(RuntimeError):
    """An inference server answered a client request with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message if status is None else f"HTTP {status}: {message}")


@attrs.frozen
class AdapterMount:
    """An adapter the server should load: its name, directory and strength in [0, 1]."""

    name: str
    path: str
    strength: float


@attrs.frozen
class InferenceRequest:
    """Everything a runtime may use to build its containers; all of it already validated."""

    workspace: Workspace
    preset: Preset
    plan: Plan
    model_source: str
    """A Hugging Face id or a local directory the server loads the model from."""
    image: str
    adapters: tuple[AdapterMount, ...] = ()
    config_path: str = CONFIG_PATH
    node_rank_env: str = ""
    """For multi-node plans: the name of an environment variable holding this pod's index, so
    that the runtime can tell the leader (0) from workers."""
    leader_address: str = ""
    """For multi-node plans: the DNS name of the leader pod behind the headless Service."""


@attrs.frozen
class InferenceWorkload:
    """What a runtime returns: the containers of one pod, plus what the Service must expose.

    `containers[0]` is the inference server, the container that gets the GPUs. Every pod of a
    workload runs the same containers; on multi-node plans the containers tell the leader from
    the workers at run time through `InferenceRequest.node_rank_env`.
    """

    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...] = ()
    service_ports: tuple[tuple[str, int, int], ...] = (("http", SERVICE_PORT, INFERENCE_PORT),)
    """(name, Service port, container port) triples."""
    extra_ports: tuple[tuple[str, int], ...] = ()
    """Ports that only the pods of a multi-node workload use among themselves (name, port);
    they go on the headless Service."""


@runtime_checkable
class InferenceClient(Protocol):
    """A client for a running server of this runtime, for health checks and `kaito chat`."""

    async def health(self) -> bool:
        """True when the server answers and has its model loaded."""
        ...

    async def chat(self, prompt: str, *, max_new_tokens: int = 128, **kwargs: Any) -> str:
        """Send one prompt and return the generated text."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Runtime(Protocol):
    """Builds the containers of an inference server for a preset and a plan."""

    name: str

    def supports(self, preset: Preset) -> bool:
        """Whether this runtime can serve the preset (its architecture, its size, adapters)."""
        ...

    def default_image(self, preset: Preset) -> str:
        """The image to run when the workspace does not name one (`presetOptions.image`)."""
        ...

    def inference_workload(self, request: InferenceRequest) -> InferenceWorkload:
        """The containers for one pod of the workload. Pure: no I/O."""
        ...

    def client(self, base_url: str) -> InferenceClient:
        """A client for a server of this runtime listening at `base_url`."""
        ...


@attrs.frozen
class RuntimeContext:
    """What a runtime factory receives: the operator's settings for it, as plain strings (for
    example the image registry to pull from)."""

    options: Mapping[str, str] = attrs.field(factory=dict)


RuntimeFactory = Callable[[RuntimeContext], Runtime]
"""The object an entry point in the `kaito.runtimes` group loads: a class or a function."""
