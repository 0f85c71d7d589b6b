"""`kaito emulator`: kaito's API-server emulator as a process of its own, for kubectl and for
`kaito operator run --kubeconfig`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from pathlib import Path

from kaito.cli._common import CliError
from kaito.plugins import Registry


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "emulator",
        help="run kaito's Kubernetes API-server emulator on 127.0.0.1",
        description=(
            "Serve an in-memory Kubernetes API server on 127.0.0.1 with kaito's Workspace CRD and "
            "Karpenter's NodeClaim CRD installed, and lifecycle simulators that make NodeClaims "
            "launch nodes, schedule and start pods and run jobs. Writes a kubeconfig and prints "
            "'kubeconfig: PATH' once it serves; stops on Ctrl-C or SIGTERM. Plain HTTP, no "
            "authentication: for development and tests only."
        ),
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("KAITO_EMULATOR_PORT", "6443")),
        help="port on 127.0.0.1 (0 picks a free one; env KAITO_EMULATOR_PORT)",
    )
    p.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="where to write the kubeconfig (default: ~/.kaito/emulator/kubeconfig)",
    )
    p.add_argument(
        "--no-simulators",
        action="store_true",
        help="serve the store only: nothing launches nodes or starts pods",
    )
    p.set_defaults(func=_emulator)


def _default_kubeconfig() -> Path:
    home = Path(os.environ.get("KAITO_HOME", Path.home() / ".kaito"))
    return home / "emulator" / "kubeconfig"


def _emulator(args: argparse.Namespace, registry: Registry) -> int:
    path = Path(args.kubeconfig) if args.kubeconfig else _default_kubeconfig()
    try:
        asyncio.run(_serve(args.port, path, simulate=not args.no_simulators))
    except OSError as exc:
        raise CliError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    return 0


async def _serve(port: int, kubeconfig: Path, *, simulate: bool) -> None:
    from kaito.testing import kaito_cluster  # the emulator's dependencies load only here

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with kaito_cluster(port=port, simulate=simulate, kubeconfig=kubeconfig) as cluster:
        print(f"serving: {cluster.url}", flush=True)
        print(f"kubeconfig: {cluster.kubeconfig}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop.wait()
    print("stopped", flush=True)
