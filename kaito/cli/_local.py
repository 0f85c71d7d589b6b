"""The local mode's commands: `kaito up`, `down`, `get`, `chat` and `logs`.

`up` serves a workspace on this machine (see `kaito.local`); the others find a running `up`
through its state file under `$KAITO_HOME/local/` and talk to it: its API server for `get`, its
endpoint for `chat`, its pod log files for `logs`, its process for `down`. Without a running
`kaito up` they say so in one line. The heavy imports (the emulator, the operator) happen inside
the commands, so `kaito --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaito.cli._common import CliError, load_documents, print_table
from kaito.plugins import Registry

DEFAULT_TIMEOUT = 900.0
"""Seconds `kaito up --detach` waits for the workspace (a real preset may download GBs)."""

_UP_DESCRIPTION = """\
Serve a workspace on this machine: kaito's API server, the operator and a local kubelet run in
this process, the workload's containers run as processes, and the workspace's Service gets a
port on 127.0.0.1. This machine is the node (its GPUs if it has any, else its CPU and memory);
resource.instanceType is ignored and the model is sized for this machine. Prints each condition
change, then the endpoint, a curl line and the kubeconfig for kubectl. A tuning workspace runs
its tuning Job here and reports where the adapter went. Secrets and ConfigMaps the workspace
needs (a push or pull secret, a tuning config) may follow it in the same file. Ctrl-C (or
`kaito down`) stops everything. Tiny presets (tiny-phi-3-random, ...) work offline; real
presets download their model from the Hugging Face hub."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up",
        help="serve a workspace on this machine (local mode)",
        description=_UP_DESCRIPTION,
    )
    up.add_argument(
        "-f",
        "--file",
        required=True,
        help="the workspace YAML (or - for stdin); further documents in it (v1 ConfigMaps and "
        "Secrets the workspace refers to) are created first",
    )
    up.add_argument(
        "--port", type=int, default=0, help="the endpoint's port on 127.0.0.1 (default: a free one)"
    )
    up.add_argument(
        "--detach",
        "-d",
        action="store_true",
        help="run in the background; return once the workspace is ready (a tuning one: done)",
    )
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"with --detach: give up (and stop) after this long (default {DEFAULT_TIMEOUT:g})",
    )
    up.add_argument(
        "--cpu", action="store_true", help="run on the CPU even if this machine has GPUs"
    )
    up.set_defaults(func=_up)

    down = sub.add_parser(
        "down",
        help="stop local workspaces (all of them without NAME)",
        description="Stop a `kaito up` run and every process it started, and release its ports.",
    )
    down.add_argument("name", nargs="?", help="the workspace `kaito up` was started with")
    down.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="before killing"
    )
    down.set_defaults(func=_down)

    get = sub.add_parser("get", help="list local workspaces (kubectl get style)")
    get.add_argument("resource", choices=["workspaces", "workspace", "ws"])
    get.add_argument("name", nargs="?", help="only this workspace")
    get.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json"],
        default="table",
        help="wide adds the tuning columns (JOBSTARTED, WORKSPACESUCCEEDED) and STATE",
    )
    get.set_defaults(func=_get)

    chat = sub.add_parser("chat", help="send a prompt to a local workspace")
    chat.add_argument("name", help="the workspace")
    chat.add_argument("prompt", help="the prompt")
    chat.add_argument("--max-new-tokens", type=int, default=128, metavar="N")
    chat.set_defaults(func=_chat)

    logs = sub.add_parser("logs", help="print the inference server's log of a local workspace")
    logs.add_argument("name", help="the workspace")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=_logs)


def _fail(exc: Exception) -> CliError:
    return CliError(str(exc), code=1)


# -- up ------------------------------------------------------------------------------------------


def _up(args: argparse.Namespace, registry: Registry) -> int:
    from kaito.local import LocalModeError, LocalSettings, prepare_documents, session_dir

    documents = load_documents(args.file)
    try:
        workspace = prepare_documents(documents, registry)
    except LocalModeError as exc:
        raise _fail(exc) from None
    settings = LocalSettings(port=args.port, gpus="none" if args.cpu else "auto")
    if args.detach:
        return _up_detached(args, workspace.name, session_dir(workspace.name))
    try:
        asyncio.run(_serve(workspace, registry, settings))
    except LocalModeError as exc:
        raise _fail(exc) from None
    return 0


async def _serve(workspace: Any, registry: Registry, settings: Any) -> None:
    from kaito.local import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
        elif main is not None:
            main.cancel()  # a second Ctrl-C: stop without waiting for a graceful end

    # SIGHUP too: a closed terminal must not leave the pods' processes (own sessions) behind.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await serve(workspace, registry=registry, stop=stop, settings=settings, out=sys.stdout)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _up_detached(args: argparse.Namespace, name: str, directory: Path) -> int:
    from kaito.local import LocalModeError, read_state, spawn_detached, wait_until_up
    from kaito.local._paths import DAEMON_LOG

    existing = read_state(directory)
    if existing is not None and existing.alive:
        raise CliError(
            f"workspace {name} is already up (pid {existing.pid}, {existing.url}); "
            f"stop it first with: kaito down {name}",
            code=1,
        )
    source = "-" if args.file == "-" else str(Path(args.file).resolve())
    if source == "-":
        raise CliError("--detach needs a file (-f FILE), not standard input")
    argv = [sys.executable, "-m", "kaito", "up", "-f", source, "--port", str(args.port)]
    if args.cpu:
        argv.append("--cpu")
    log = directory / DAEMON_LOG
    offset = log.stat().st_size if log.exists() else 0
    process = spawn_detached(argv, directory)
    try:
        state = wait_until_up(
            process,
            directory,
            echo=lambda line: print(line, flush=True),
            timeout=args.timeout,
            log_offset=offset,
        )
    except LocalModeError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        process.terminate()
        raise
    print(
        f"kaito up runs in the background (pid {state.pid}); stop it with: kaito down {state.name}"
    )
    return 0


# -- down ----------------------------------------------------------------------------------------


def _down(args: argparse.Namespace, registry: Registry) -> int:
    from kaito.local import list_sessions, stop_session

    sessions = list_sessions()
    if args.name:
        sessions = [s for s in sessions if s.name == args.name]
        if not sessions:
            raise CliError(f"no local workspace {args.name!r} is running", code=1)
    if not sessions:
        print("no local kaito is running")
        return 0
    for state in sessions:
        report = stop_session(state, timeout=args.timeout)
        if not report.was_running:
            detail = f"; killed {len(report.killed)} leftover process(es)" if report.killed else ""
            print(f"cleaned up {state.name} (its kaito up had already exited{detail})")
        elif report.graceful:
            print(f"stopped {state.name}")
        else:
            print(f"stopped {state.name} (killed {len(report.killed)} process(es) that lingered)")
    return 0


# -- get -----------------------------------------------------------------------------------------


def age(created: str, now: datetime | None = None) -> str:
    """kubectl's short age: 42s, 3m5s, 25m, 3h4m, 20h, 5d."""
    try:
        then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours == 0:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _condition(workspace: Mapping[str, Any], type_: str) -> str:
    for cond in (workspace.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("status", ""))
    return ""


def _get(args: argparse.Namespace, registry: Registry) -> int:
    from kaito.local import LocalModeError
    from kaito.local._control import no_run_message, running_sessions

    sessions = running_sessions()
    if not sessions:
        raise CliError(no_run_message(), code=1)
    try:
        found = asyncio.run(_list_workspaces([s.kubeconfig for s in sessions if s.kubeconfig]))
    except LocalModeError as exc:
        raise _fail(exc) from None
    if args.name:
        found = [w for w in found if (w.get("metadata") or {}).get("name") == args.name]
        if not found:
            raise CliError(f"workspace {args.name!r} not found", code=1)
    if args.output == "json":
        print(
            json.dumps([{k: v for k, v in w.items() if k != "_instance"} for w in found], indent=2)
        )
        return 0
    rows = []
    for ws in found:
        meta = ws.get("metadata") or {}
        rows.append(
            [
                meta.get("name", ""),
                ws.get("_instance", ""),
                _condition(ws, "ResourceReady"),
                _condition(ws, "InferenceReady"),
                _condition(ws, "WorkspaceReady"),
            ]
        )
        if args.output == "wide":
            rows[-1] += [
                _condition(ws, "JobStarted"),
                _condition(ws, "WorkspaceSucceeded"),
                (ws.get("status") or {}).get("state") or "",
            ]
        rows[-1].append(age(str(meta.get("creationTimestamp", ""))))
    headers = ["name", "instance", "resourceready", "inferenceready", "workspaceready"]
    if args.output == "wide":
        headers += ["jobstarted", "workspacesucceeded", "state"]
    print_table([*headers, "age"], rows)
    return 0


async def _list_workspaces(kubeconfigs: Sequence[str]) -> list[dict[str, Any]]:
    from kaito.kube import NODE, WORKSPACE, KubeClient, KubeError, NotFound
    from kaito.local import LocalModeError
    from kaito.provisioners.local import CPU_INSTANCE_TYPE

    found: list[dict[str, Any]] = []
    for path in kubeconfigs:
        try:
            async with await KubeClient.from_kubeconfig(path, request_timeout=5.0) as client:
                for ws in (await client.list(WORKSPACE)).items:
                    instance = (ws.get("resource") or {}).get("instanceType") or ""
                    nodes = (ws.get("status") or {}).get("workerNodes") or []
                    if not instance and nodes:
                        try:
                            node = await client.get(NODE, str(nodes[0]))
                        except NotFound:
                            node = {}
                        labels = (node.get("metadata") or {}).get("labels") or {}
                        instance = labels.get("node.kubernetes.io/instance-type", "")
                    found.append({**ws, "_instance": instance or CPU_INSTANCE_TYPE})
        except (KubeError, OSError) as exc:
            raise LocalModeError(f"cannot reach the local API server ({path}): {exc}") from None
    return found


# -- chat ----------------------------------------------------------------------------------------


def _chat(args: argparse.Namespace, registry: Registry) -> int:
    from kaito.local import LocalModeError, endpoint_of, find_session
    from kaito.runtimes import InferenceServerError, RuntimeContext

    try:
        state = find_session(args.name)
        url = endpoint_of(state, args.name)
    except LocalModeError as exc:
        raise _fail(exc) from None
    runtime = registry.runtime(state.runtime if args.name == state.name else "hf")
    client = runtime(RuntimeContext()).client(url)

    async def ask() -> str:
        try:
            return await client.chat(args.prompt, max_new_tokens=args.max_new_tokens)
        finally:
            await client.aclose()

    try:
        print(asyncio.run(ask()))
    except InferenceServerError as exc:
        raise CliError(f"{args.name} did not answer: {exc}", code=1) from None
    return 0


# -- logs ----------------------------------------------------------------------------------------


def _log_files(name: str) -> list[Path]:
    from kaito.local import LocalModeError, find_session, list_sessions, session_dir
    from kaito.local._paths import PODS_DIR

    directories: list[Path] = []
    try:
        state = find_session(name)
        directories.append(Path(state.directory))
        recorded = [Path(p.log) for p in state.pods if p.workspace == name and p.log]
    except LocalModeError:
        if not (session_dir(name) / PODS_DIR).is_dir() and not list_sessions():
            raise
        recorded = []
        directories.append(session_dir(name))
    found = set(recorded)
    for directory in directories:
        found.update((directory / PODS_DIR).glob(f"*_{name}-*/pod.log"))
    return sorted(p for p in found if p.is_file())


def _logs(args: argparse.Namespace, registry: Registry) -> int:
    from kaito.local import LocalModeError

    try:
        files = _log_files(args.name)
    except LocalModeError as exc:
        raise _fail(exc) from None
    if not files:
        raise CliError(f"no logs for {args.name} yet (its pod has not started)", code=1)
    offsets: dict[Path, int] = {}
    for path in files:
        if len(files) > 1:
            print(f"==> {path.parent.name} <==")
        data = path.read_bytes()
        offsets[path] = len(data)
        sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
    while args.follow:
        time.sleep(0.5)
        for path in files:
            with path.open("rb") as handle:
                handle.seek(offsets[path])
                data = handle.read()
            if data:
                offsets[path] += len(data)
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
    return 0
