"""Helpers of the emulator tests: sample objects, a gadget CRD, and a raw JSON HTTP client."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import attrs

GADGET_GROUP = "test.kaito.sh"


def gadget_crd(*, status: bool = True, versions: tuple[str, ...] = ("v1",)) -> dict[str, Any]:
    """A namespaced CRD exercising schema validation, defaults, pruning, CEL and printing."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "x-kubernetes-validations": [
                    {"rule": "self.size <= self.limit", "message": "size must not exceed limit"},
                    {
                        "rule": "!has(oldSelf.mode) || self.mode == oldSelf.mode",
                        "message": "mode is immutable",
                    },
                ],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 100},
                    "limit": {"type": "integer", "default": 10},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "name": {
                        "type": "string",
                        "minLength": 2,
                        "maxLength": 8,
                        "pattern": "^[a-z]+$",
                    },
                    "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "port": {"type": "integer"},
                            },
                        },
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "when": {"type": "string", "format": "date-time"},
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "phase": {"type": "string"},
                    "conditions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "status": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    }
    columns = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    version_docs = []
    for i, name in enumerate(versions):
        doc: dict[str, Any] = {
            "name": name,
            "served": True,
            "storage": i == 0,
            "schema": {"openAPIV3Schema": schema},
            "additionalPrinterColumns": columns,
        }
        if status:
            doc["subresources"] = {"status": {}}
        version_docs.append(doc)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{GADGET_GROUP}"},
        "spec": {
            "group": GADGET_GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": "gadgets",
                "singular": "gadget",
                "kind": "Gadget",
                "shortNames": ["gd"],
            },
            "versions": version_docs,
        },
    }


def gadget(name: str, /, size: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GADGET_GROUP}/v1",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


def configmap(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


@attrs.frozen
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Http:
    """A minimal raw client: JSON in, (status, decoded body) out."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        data = None
        if body is not None:
            data = body if isinstance(body, str | bytes) else json.dumps(body)
        hdrs = {"Content-Type": content_type, **(headers or {})}
        async with self.session.request(
            method, self.base + path, data=data, headers=hdrs, params=params
        ) as resp:
            raw = await resp.read()
            try:
                decoded: Any = json.loads(raw) if raw else None
            except ValueError:
                decoded = raw.decode()
            return Reply(resp.status, decoded, dict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.call("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any, content_type: str, **kw: Any) -> Reply:
        return await self.call("PATCH", path, body, content_type=content_type, **kw)

    async def delete(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("DELETE", path, body, **kw)


CM = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"
GADGETS = f"/apis/{GADGET_GROUP}/v1/namespaces/default/gadgets"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
