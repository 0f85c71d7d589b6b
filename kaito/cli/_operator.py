"""`kaito operator run` (the operator process) and `kaito manifests operator` (its install).

The flags of `operator run` are generated from `kaito.operator.OPTIONS`, the same table that
defines the `KAITO_*` environment variables, so the two can never offer different options.
`register_manifests` adds `operator` to the `manifests` command group, whose parser another
module creates; it is exposed for that module to call.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import yaml

from kaito._version import __version__
from kaito.cli._common import CliError
from kaito.kube import ConfigError
from kaito.operator import (
    OPTIONS,
    Option,
    SettingsError,
    configure_logging,
    operator_manifests,
    parse_pairs,
    run_workspace_operator,
    settings_from,
)
from kaito.plugins import Registry

DEFAULT_IMAGE = f"kaito:{__version__}"

_RUN_DESCRIPTION = """\
Run the kaito operator: watch Workspaces and the objects kaito creates for them, and reconcile
each workspace with the configured node provisioner and runtime. With leader election (the
default) only the replica holding the Lease works; the others stand by. Serves /healthz and
/readyz on --health-addr and Prometheus /metrics on --metrics-addr. SIGTERM or SIGINT stops
taking work, lets running reconciles finish within --shutdown-timeout, and releases the lease.

Every option can also be set through the environment variable shown in brackets; a flag given
on the command line wins over the variable."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "operator",
        help="run the kaito operator against a cluster",
        description="The kaito operator: the controller that reconciles Workspaces.",
    )
    osub = p.add_subparsers(dest="operator_command", required=True, metavar="{run}")
    run = osub.add_parser(
        "run",
        help="watch and reconcile workspaces until SIGTERM",
        description=_RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for option in OPTIONS:
        _add_option(run, option)
    run.set_defaults(func=_run)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = f"{option.help} [{option.env}]"
    common: dict[str, Any] = {"dest": option.field, "default": None, "help": help_text}
    if option.type == "bool":
        parser.add_argument(option.flag, action=argparse.BooleanOptionalAction, **common)
    elif option.type == "flag":
        parser.add_argument(option.flag, action="store_true", **common)
    elif option.type == "pairs":
        parser.add_argument(option.flag, action="append", metavar=option.metavar, **common)
    elif option.type == "choice":
        parser.add_argument(option.flag, choices=option.choices, **common)
    else:
        convert = {"int": int, "float": float}.get(option.type, str)
        parser.add_argument(option.flag, type=convert, metavar=option.metavar, **common)


def _run(args: argparse.Namespace, registry: Registry) -> int:
    given = {option.field: getattr(args, option.field) for option in OPTIONS}
    try:
        if given["provisioner_options"] is not None:
            given["provisioner_options"] = parse_pairs(given["provisioner_options"])
        settings = settings_from(given)
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(run_workspace_operator(settings, registry))
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    except ConfigError as exc:
        raise CliError(f"cannot connect to the cluster: {exc}") from None
    except OSError as exc:
        raise CliError(f"cannot start the operator: {exc}") from None
    return 0


def register_manifests(msub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `operator` to the `kaito manifests` command group."""
    q = msub.add_parser(
        "operator",
        help="the operator's install manifests (CRD, RBAC, Deployment)",
        description=(
            "Print the objects that install the kaito operator: the Workspace CRD, the "
            "namespace, a ServiceAccount with least-privilege RBAC, and the Deployment. "
            "Apply them with `kubectl apply -f -`. Karpenter's NodeClaim CRD is not included."
        ),
    )
    q.add_argument("--image", default=DEFAULT_IMAGE, help=f"operator image ({DEFAULT_IMAGE})")
    q.add_argument("--namespace", default="kaito-system", help="namespace (kaito-system)")
    q.add_argument("--replicas", type=int, default=1, help="operator replicas (1)")
    q.add_argument("--provisioner", default="karpenter", help="node provisioner (karpenter)")
    q.add_argument(
        "--provisioner-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the provisioner, repeatable",
    )
    q.add_argument("--runtime", default="hf", help="default inference runtime (hf)")
    q.add_argument(
        "--disable-node-auto-provisioning",
        action="store_true",
        help="bring-your-own nodes: never create nodes",
    )
    q.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect one active replica (default: on)",
    )
    q.add_argument("--no-crds", action="store_true", help="leave the CRD out")
    q.add_argument("--no-namespace", action="store_true", help="leave the Namespace out")
    q.set_defaults(func=_manifests_operator)


def _manifests_operator(args: argparse.Namespace, registry: Registry) -> int:
    try:
        objects = operator_manifests(
            args.image,
            args.namespace,
            replicas=args.replicas,
            provisioner=args.provisioner,
            provisioner_options=parse_pairs(args.provisioner_option),
            runtime=args.runtime,
            disable_node_auto_provisioning=args.disable_node_auto_provisioning,
            leader_election=args.leader_election,
            include_crds=not args.no_crds,
            include_namespace=not args.no_namespace,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(yaml.safe_dump_all(objects, sort_keys=False), end="")
    return 0
