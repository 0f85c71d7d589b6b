"""Inference runtimes: the protocol, and the built-in runtimes registered through the
`kaito.runtimes` entry-point group."""

from kaito.runtimes._protocol import (
    ADAPTERS_DIR,
    CONFIG_PATH,
    INFERENCE_PORT,
    RUNTIME_ANNOTATION,
    SERVICE_PORT,
    AdapterMount,
    Container,
    InferenceClient,
    InferenceRequest,
    InferenceWorkload,
    Runtime,
    RuntimeContext,
    RuntimeFactory,
)

__all__ = [
    "ADAPTERS_DIR",
    "CONFIG_PATH",
    "INFERENCE_PORT",
    "RUNTIME_ANNOTATION",
    "SERVICE_PORT",
    "AdapterMount",
    "Container",
    "InferenceClient",
    "InferenceRequest",
    "InferenceWorkload",
    "Runtime",
    "RuntimeContext",
    "RuntimeFactory",
]
