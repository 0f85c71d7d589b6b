"""Commands that need no cluster: validate, plan, presets, skus, manifests."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from kaito.api import (
    FieldError,
    Workspace,
    WorkspaceInvalid,
    validate_create,
    validate_update,
    workspace_crd,
)
from kaito.api._constants import COMPANION_KINDS
from kaito.cli import _operator
from kaito.cli._common import CliError, gib, load_documents, print_json, print_table
from kaito.plugins import Registry
from kaito.presets import (
    GpuSku,
    Plan,
    PlanError,
    PlanOptions,
    Preset,
    SkuCatalog,
    builtin_skus,
    plan,
    rank_skus,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check workspace files against kaito's admission rules",
        description=(
            "Validate workspace YAML files (kaito.sh/v1alpha1 or v1beta1) with the rules the "
            "admission webhook applies. Prints one 'path: message' line per error on standard "
            "output and exits 1 if any file is invalid, 0 if all are valid."
        ),
    )
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE",
        help="a workspace file; repeat for several; '-' reads stdin",
    )
    p.add_argument(
        "--old",
        metavar="FILE",
        help="validate as an update of the workspace in FILE (immutable fields)",
    )
    p.add_argument(
        "--byo",
        action="store_true",
        help="bring-your-own nodes: node auto-provisioning is disabled",
    )
    p.set_defaults(func=_validate)

    p = sub.add_parser(
        "plan",
        help="size GPUs and nodes for a workspace or a preset",
        description=(
            "Compute the deployment plan kaito would use: node count, GPUs per node, tensor and "
            "pipeline parallel sizes, maximum model length and the memory budget behind them. "
            "Without an instance type, rank the instance types that fit."
        ),
    )
    p.add_argument("-f", "--filename", dest="file", metavar="FILE", help="a workspace file")
    p.add_argument("--preset", help="a preset name (instead of a workspace file)")
    p.add_argument("--instance-type", help="a GPU instance type, e.g. Standard_NC6s_v3")
    p.add_argument("--count", type=int, help="a node count to honour (at least the needed one)")
    p.add_argument("--max-model-len", type=int, help="the context length to plan for")
    p.add_argument("--cloud", choices=["azure", "aws"], help="rank only this cloud's SKUs")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_plan)

    p = sub.add_parser("presets", help="list or show model presets")
    psub = p.add_subparsers(dest="presets_command", required=True, metavar="{list,show}")
    q = psub.add_parser("list", help="list the presets of every installed preset pack")
    q.add_argument("-o", "--output", choices=["table", "json"], default="table")
    q.set_defaults(func=_presets_list)
    q = psub.add_parser("show", help="show one preset")
    q.add_argument("name")
    q.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    q.set_defaults(func=_presets_show)

    p = sub.add_parser("skus", help="list GPU instance types")
    ssub = p.add_subparsers(dest="skus_command", required=True, metavar="{list}")
    q = ssub.add_parser("list", help="list the GPU instance types kaito knows")
    q.add_argument("--cloud", choices=["azure", "aws"])
    q.add_argument("-o", "--output", choices=["table", "json"], default="table")
    q.set_defaults(func=_skus_list)

    p = sub.add_parser("manifests", help="print Kubernetes manifests")
    msub = p.add_subparsers(dest="manifests_command", required=True, metavar="{crd,operator}")
    q = msub.add_parser("crd", help="the Workspace CustomResourceDefinition")
    q.set_defaults(func=_manifests_crd)
    _operator.register_manifests(msub)


# -- validate --------------------------------------------------------------------------------


def _workspace_document(path: str) -> dict[str, Any]:
    """The file's one document, or its one Workspace when the others are ConfigMaps and
    Secrets (a file written for `kaito up`)."""
    docs = load_documents(path)
    if len(docs) == 1:
        return docs[0]
    workspaces = [d for d in docs if d.get("kind") == "Workspace"]
    others = [d for d in docs if d.get("kind") != "Workspace"]
    if len(workspaces) == 1 and all(
        (d.get("apiVersion"), d.get("kind")) in COMPANION_KINDS for d in others
    ):
        return workspaces[0]
    raise CliError(
        f"{path}: the file holds {len(docs)} YAML documents; give one workspace per file "
        "(with only the ConfigMaps and Secrets it refers to beside it)"
    )


def _load_workspace(path: str) -> Workspace:
    try:
        return Workspace.from_dict(_workspace_document(path))
    except WorkspaceInvalid as exc:
        raise _InvalidFile(exc.errors) from None


class _InvalidFile(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors


def _validate(args: argparse.Namespace, registry: Registry) -> int:
    old: Workspace | None = None
    if args.old:
        try:
            old = _load_workspace(args.old)
        except _InvalidFile as exc:
            raise CliError(
                f"{args.old}: the old workspace is itself invalid: {exc.errors[0]}"
            ) from None
    failed = 0
    for path in args.files:
        try:
            ws = _load_workspace(path)
            options: dict[str, Any] = {
                "presets": registry.presets,
                "auto_provisioning": not args.byo,
            }
            errors = (
                validate_update(old, ws, **options)
                if old is not None
                else validate_create(ws, **options)
            )
        except _InvalidFile as exc:
            errors = exc.errors
        if errors:
            failed += 1
            for err in errors:
                print(f"{err.path}: {err.message}")
            print(
                f"{path}: invalid ({len(errors)} error{'s' if len(errors) > 1 else ''})",
                file=sys.stderr,
            )
        else:
            print(f"{path}: valid", file=sys.stderr)
    return 1 if failed else 0


# -- plan ------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace, registry: Registry) -> int:
    skus = builtin_skus()
    if args.file and args.preset:
        raise CliError("give either -f FILE or --preset NAME, not both")
    count: int | None = args.count
    instance_type: str | None = args.instance_type
    mode = "inference"
    method: str | None = None
    if args.file:
        try:
            ws = _load_workspace(args.file)
        except _InvalidFile as exc:
            raise CliError(f"{args.file}: invalid workspace: {exc.errors[0]}", code=1) from None
        block = ws.inference or ws.tuning
        preset_spec = block.preset if block is not None else None
        if preset_spec is None:
            raise CliError(
                f"{args.file}: the workspace uses a pod template, not a preset; "
                "there is nothing to plan"
            )
        preset_name = preset_spec.name
        if ws.resource is not None:
            instance_type = instance_type or ws.resource.instance_type or None
            count = count if count is not None else ws.resource.count
        if ws.tuning is not None:
            mode = "tuning"
            method = str(ws.tuning.method) if ws.tuning.method else None
    elif args.preset:
        preset_name = args.preset
    else:
        raise CliError("give a workspace with -f FILE, or a preset with --preset NAME")
    preset = _preset(registry, preset_name)
    options = PlanOptions(
        node_count=count,
        max_model_len=args.max_model_len,
        mode=mode,  # type: ignore[arg-type]
        tuning_method=method,  # type: ignore[arg-type]
    )
    if instance_type:
        sku = _sku(skus, instance_type)
        try:
            result = plan(preset, sku, options)
        except PlanError as exc:
            raise CliError(str(exc), code=1) from None
        if args.output == "json":
            print_json(result.to_dict())
        else:
            _print_plan(result, sku, preset)
        return 0
    catalog = skus.for_cloud(args.cloud) if args.cloud else skus
    ranked = rank_skus(preset, catalog, options)
    if not ranked:
        raise CliError(f"no known instance type fits {preset.name}", code=1)
    if args.output == "json":
        print_json([p.to_dict() for p in ranked])
    else:
        print_table(
            ["instance type", "nodes", "gpus/node", "tp", "pp", "max model len", "gpu mem/node"],
            [
                [
                    p.sku,
                    p.node_count,
                    p.gpus_per_node,
                    p.tensor_parallel_size,
                    p.pipeline_parallel_size,
                    p.max_model_len,
                    gib(skus[p.sku].total_gpu_memory_bytes),
                ]
                for p in ranked
            ],
        )
    return 0


def _print_plan(result: Plan, sku: GpuSku, preset: Preset) -> None:
    b = result.budget
    rows: list[tuple[str, object]] = [
        ("preset", f"{preset.name} ({preset.parameters / 1e9:.2f}B parameters, {preset.dtype})"),
        (
            "instance type",
            f"{sku.name} ({sku.gpu_count}x {sku.gpu_model} {gib(sku.gpu_memory_bytes)})",
        ),
        ("nodes", result.node_count),
        ("gpus per node", result.gpus_per_node),
        ("tensor parallel", result.tensor_parallel_size),
        ("pipeline parallel", result.pipeline_parallel_size),
        ("max model len", result.max_model_len),
        ("gpu memory utilization", result.gpu_memory_utilization),
        ("disk", f"{result.disk_gib}Gi"),
        ("weights", gib(b.weights)),
        ("weights per gpu", gib(b.weights_per_gpu)),
        ("kv cache per token", f"{b.kv_bytes_per_token} bytes"),
        ("usable per gpu", gib(b.usable_per_gpu)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 2}}{value}")


# -- presets, skus, manifests ----------------------------------------------------------------


def _preset(registry: Registry, name: str) -> Preset:
    try:
        return registry.presets[name]
    except KeyError as exc:
        raise CliError(str(exc.args[0]) if exc.args else f"unknown preset {name!r}") from None


def _sku(skus: SkuCatalog, name: str) -> GpuSku:
    try:
        return skus[name]
    except KeyError as exc:
        raise CliError(
            str(exc.args[0]) if exc.args else f"unknown instance type {name!r}"
        ) from None


def _preset_dict(p: Preset) -> dict[str, Any]:
    # Generated presets say so first: their text is meaningless, whatever the numbers suggest.
    generated = (
        {"description": p.description, "generatedFrom": p.generated_from} if p.generated else {}
    )
    return {
        "name": p.name,
        **generated,
        "huggingFaceId": p.hf_id,
        "family": p.family,
        "modelType": p.model_type,
        "architecture": p.architecture,
        "parameters": p.parameters,
        "weightBytes": p.weight_bytes,
        "dtype": p.dtype,
        "layers": p.layers,
        "hiddenSize": p.hidden_size,
        "attentionHeads": p.attention_heads,
        "kvHeads": p.kv_heads,
        "headDim": p.head_dim,
        "contextLength": p.context_length,
        "runtimes": list(p.runtimes),
        "supportsTuning": p.supports_tuning,
        "supportsDistributed": p.supports_distributed,
        "diskGiB": p.disk_gib,
        "chatTemplate": p.chat_template,
    }


def _presets_list(args: argparse.Namespace, registry: Registry) -> int:
    presets = [registry.presets[n] for n in registry.presets.names()]
    if args.output == "json":
        print_json([_preset_dict(p) for p in presets])
        return 0
    print_table(
        ["name", "family", "params", "weights", "context", "runtimes", "tuning", "distributed"],
        [
            [
                p.name,
                p.family,
                f"{p.parameters / 1e9:.1f}B",
                gib(p.weight_bytes),
                p.context_length,
                p.runtimes,
                p.supports_tuning,
                p.supports_distributed,
            ]
            for p in presets
        ],
    )
    return 0


def _presets_show(args: argparse.Namespace, registry: Registry) -> int:
    preset = _preset(registry, args.name)
    data = _preset_dict(preset)
    if args.output == "json":
        print_json(data)
    else:
        print(yaml.safe_dump(data, sort_keys=False), end="")
    return 0


def _skus_list(args: argparse.Namespace, registry: Registry) -> int:
    skus = builtin_skus()
    if args.cloud:
        skus = skus.for_cloud(args.cloud)
    items = [skus[n] for n in skus.names()]
    if args.output == "json":
        print_json(
            [
                {
                    "name": s.name,
                    "cloud": s.cloud,
                    "gpuModel": s.gpu_model,
                    "gpuCount": s.gpu_count,
                    "gpuMemoryBytes": s.gpu_memory_bytes,
                    "computeCapability": s.compute_capability,
                    "vcpus": s.vcpus,
                    "nvme": s.nvme,
                }
                for s in items
            ]
        )
        return 0
    print_table(
        ["name", "cloud", "gpu", "gpus", "memory/gpu", "compute capability"],
        [
            [
                s.name,
                s.cloud,
                s.gpu_model,
                s.gpu_count,
                gib(s.gpu_memory_bytes),
                s.compute_capability,
            ]
            for s in items
        ],
    )
    return 0


def _manifests_crd(args: argparse.Namespace, registry: Registry) -> int:
    print(yaml.safe_dump(workspace_crd(), sort_keys=False), end="")
    return 0
