"""Shared helpers of the reconciler tests: workspace documents, a registry, small readers and a
fake clock.

The documents are the seed's YAML (loaded unchanged) plus variations; the registry holds the
built-in runtimes explicitly, never through installed entry points.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from kaito.api import Workspace
from kaito.plugins import Registry
from kaito.reconcile import WorkspaceReconciler

SEED_DIR = Path(__file__).resolve().parent.parent / "data" / "seed"

PHI3 = "phi-3-mini-4k-instruct"
NC6 = "Standard_NC6s_v3"
LLAMA70 = "llama-3.3-70b-instruct"
A100X2 = "Standard_NC48ads_A100_v4"
"""Two A100s per node: llama-3.3-70b needs two such nodes."""


def seed(name: str, namespace: str = "default") -> dict[str, Any]:
    """A seed document as the user wrote it, with a namespace (as the API server sets one)."""
    data = yaml.safe_load((SEED_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    data["metadata"]["namespace"] = namespace
    return data


def inference_doc(
    name: str = "ws-phi",
    *,
    namespace: str = "default",
    preset: str = PHI3,
    instance_type: str | None = NC6,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **inference: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"labelSelector": {"matchLabels": labels or {"apps": name}}}
    if instance_type is not None:
        resource["instanceType"] = instance_type
    doc: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": namespace},
        "resource": resource,
        "inference": {"preset": {"name": preset}, **inference},
    }
    if annotations:
        doc["metadata"]["annotations"] = dict(annotations)
    return doc


def with_uid(doc: dict[str, Any], uid: str = "uid-1", generation: int = 1) -> Workspace:
    """The document as the API server would hand it back: a uid and a generation."""
    data = copy.deepcopy(doc)
    data["metadata"].setdefault("uid", uid)
    data["metadata"].setdefault("generation", generation)
    return Workspace.from_dict(data)


def registry() -> Registry:
    """The built-in runtimes, registered by hand."""
    from kaito.runtimes.hf._runtime import HuggingFaceRuntime
    from kaito.runtimes.tgi import TGIRuntime
    from kaito.runtimes.triton import TritonRuntime
    from kaito.runtimes.vllm import VLLMRuntime

    reg = Registry()
    reg.add_runtime("hf", HuggingFaceRuntime)
    reg.add_runtime("vllm", VLLMRuntime)
    reg.add_runtime("tgi", TGIRuntime)
    reg.add_runtime("triton", TritonRuntime)
    return reg


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list(obj["spec"]["template"]["spec"]["containers"])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


ReconcilerFactory = Callable[..., WorkspaceReconciler]
"""The `make_reconciler` fixture: (provisioner=None, settings=None) -> a reconciler."""
