"""kaito-launch: the few steps that must happen inside an inference container, before the server.

A runtime is pure: it builds container specs without reading the workspace's ConfigMap and
without knowing which pod of a multi-node workload it describes. Three things can therefore only
be decided in the container, at start:

- `exec`: fold the runtime's section of the inference config file (`vllm:`, `tgi:`) into the
  server's command line, then exec the server. Flags kaito sets from the plan win (they are sized
  to fit the GPUs); the file adds the flags kaito leaves alone, e.g. `enable-prefix-caching`.
  With `--ray-nodes` the pod's rank (an environment variable) decides its role: rank 0 starts a
  Ray head, waits until every node has joined and execs the server; the others join the head
  with `ray start --block` (retrying while the leader comes up) and stay there.
- `triton-repo`: write a Triton model repository (`config.pbtxt`, `1/model.json` with the vLLM
  engine arguments, `1/multi_lora.json`) and exec `tritonserver` on it.
- `probe`: the health check of a multi-node pod, whose containers are the same on every pod:
  the leader answers HTTP, a worker is ready when it can reach the Ray head.

This module only uses the standard library (and PyYAML, which every server image has through
transformers), because it runs in upstream images: the runtimes pass its source to
`python3 -c` (see `launcher_source()` in `_common`). Importing it runs nothing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

PROG = "kaito-launch"


class LaunchError(Exception):
    """A launch step that cannot go on; the message is printed and the exit status is 2."""


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# -- the inference config file ------------------------------------------------------------------


def read_section(path: str, section: str) -> dict[str, Any]:
    """The `section` mapping of the YAML file at `path`; empty when the file or the section is
    missing (a workspace without a config, or a config for another runtime)."""
    file = Path(path)
    if not path or not file.is_file():
        return {}
    try:
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        _say(f"PyYAML is not installed here; ignoring {path}")
        return {}
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"cannot read the inference config {path}: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise LaunchError(f"the inference config {path} must hold a mapping at the top level")
    values = document.get(section)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise LaunchError(f"'{section}' in the inference config {path} must be a mapping")
    return {str(key): value for key, value in values.items()}


def _has_flag(command: Sequence[str], flag: str) -> bool:
    return any(token == flag or token.startswith(flag + "=") for token in command)


def merge_flags(command: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """`command` plus a flag for every config value whose flag it does not already carry.

    `key: value` becomes `--key value` (underscores read as dashes); `true` the bare flag;
    `false` and null leave the server's default; a list repeats its items after the flag; a
    mapping is passed as JSON.
    """
    merged = list(command)
    for key, value in values.items():
        flag = "--" + key.replace("_", "-").lstrip("-")
        if _has_flag(command, flag):
            _say(f"{flag} is set by kaito from the workspace's plan; ignoring the config's value")
            continue
        if value is None or value is False:
            continue
        if value is True:
            merged.append(flag)
        elif isinstance(value, (list, tuple)):
            merged += [flag, *(str(item) for item in value)]
        elif isinstance(value, dict):
            merged += [flag, json.dumps(value)]
        else:
            merged += [flag, str(value)]
    return merged


def merge_engine_args(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """vLLM engine arguments (`model.json`): `base` plus the config values it does not set."""
    merged = dict(base)
    for key, value in values.items():
        name = key.replace("-", "_")
        if name in base:
            _say(f"{name} is set by kaito from the workspace's plan; ignoring the config's value")
            continue
        merged[name] = value
    return merged


# -- Triton's model repository ------------------------------------------------------------------


def write_triton_repository(
    repository: str,
    model: str,
    *,
    engine_args: Mapping[str, Any],
    model_config: str,
    loras: Mapping[str, str] | None = None,
) -> Path:
    """Write `<repository>/<model>/config.pbtxt` and version 1's `model.json` (and
    `multi_lora.json` when there are adapters); returns the model's directory."""
    model_dir = Path(repository) / model
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(model_config, encoding="utf-8")
    (version / "model.json").write_text(
        json.dumps(dict(engine_args), indent=2) + "\n", encoding="utf-8"
    )
    lora_file = version / "multi_lora.json"
    if loras:
        lora_file.write_text(json.dumps(dict(loras), indent=2) + "\n", encoding="utf-8")
    elif lora_file.exists():
        lora_file.unlink()
    return model_dir


# -- Ray, for models split over several nodes ---------------------------------------------------


def node_rank(variable: str, environ: Mapping[str, str]) -> int:
    """This pod's index from the environment variable the reconciler sets (0 is the leader)."""
    text = environ.get(variable, "").strip()
    if not text.isdigit():
        raise LaunchError(
            f"environment variable {variable} must hold this pod's index, got {text!r}"
        )
    return int(text)


def _alive_nodes(ray: Any) -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def start_ray_leader(
    *,
    port: int,
    nodes: int,
    gpus: int,
    timeout: float,
    interval: float,
    run: Callable[[list[str]], int],
) -> None:
    """Start the Ray head on this pod and wait until `nodes` nodes (itself included) are alive."""
    command = ["ray", "start", "--head", f"--port={port}", f"--num-gpus={gpus}"]
    _say("starting the Ray head: " + " ".join(command))
    status = run(command)
    if status != 0:
        raise LaunchError(f"'ray start --head' failed with exit status {status}")
    ray: Any = importlib.import_module("ray")
    ray.init(address="auto")
    try:
        deadline = time.monotonic() + timeout
        while True:
            alive = _alive_nodes(ray)
            if alive >= nodes:
                _say(f"all {nodes} Ray nodes have joined")
                return
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"only {alive} of {nodes} Ray nodes joined within {timeout:g} seconds"
                )
            _say(f"{alive} of {nodes} Ray nodes have joined; waiting")
            time.sleep(interval)
    finally:
        ray.shutdown()


def join_ray_cluster(
    *,
    leader: str,
    port: int,
    gpus: int,
    timeout: float,
    interval: float,
    run: Callable[[list[str]], int],
) -> int:
    """Join the leader's Ray cluster and block there; retried while the leader comes up (until
    `timeout`). Returns `ray start`'s exit status once it ends for good."""
    command = ["ray", "start", f"--address={leader}:{port}", f"--num-gpus={gpus}", "--block"]
    deadline = time.monotonic() + timeout
    while True:
        _say("joining the Ray cluster: " + " ".join(command))
        status = run(command)
        if status == 0 or time.monotonic() >= deadline:
            return status
        _say(f"'ray start' ended with exit status {status}; the leader may not be up yet")
        time.sleep(interval)


# -- probes -------------------------------------------------------------------------------------


def http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_ok(address: str, timeout: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def probe(*, url: str, rank: int, worker_check: str, leader: str, timeout: float) -> bool:
    """The leader (rank 0) is healthy when `url` answers 2xx; a worker per `worker_check`:
    `none` always, `tcp` when the Ray head at `leader` accepts connections."""
    if rank == 0:
        return http_ok(url, timeout)
    if worker_check == "tcp":
        return tcp_ok(leader, timeout)
    return True


# -- the command line ---------------------------------------------------------------------------


def _split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        return list(argv), []
    index = list(argv).index("--")
    return list(argv[:index]), list(argv[index + 1 :])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Steps inside an inference container before its server starts."
    )
    steps = parser.add_subparsers(dest="step", required=True)

    run = steps.add_parser("exec", help="merge the config section into COMMAND and exec it")
    run.add_argument("--config", default="", help="the inference config file")
    run.add_argument("--section", default="", help="its section for this server")
    run.add_argument("--rank-env", default="", help="variable holding this pod's index")
    run.add_argument("--ray-nodes", type=int, default=1, help="pods in the Ray cluster")
    run.add_argument("--ray-leader", default="", help="DNS name of the leader pod")
    run.add_argument("--ray-port", type=int, default=6379)
    run.add_argument("--num-gpus", type=int, default=1, help="GPUs of this pod")
    run.add_argument("--join-timeout", type=float, default=900.0)
    run.add_argument("--retry-interval", type=float, default=5.0)

    repo = steps.add_parser("triton-repo", help="write a Triton model repository, exec COMMAND")
    repo.add_argument("--repository", required=True)
    repo.add_argument("--model", required=True)
    repo.add_argument("--engine-args", required=True, help="JSON object for model.json")
    repo.add_argument("--model-config", required=True, help="the text of config.pbtxt")
    repo.add_argument("--loras", default="", help="JSON object of adapter name -> directory")
    repo.add_argument("--config", default="")
    repo.add_argument("--section", default="")

    check = steps.add_parser("probe", help="exit 0 when this pod is healthy")
    check.add_argument("--url", required=True)
    check.add_argument("--rank-env", default="")
    check.add_argument("--worker-check", choices=("none", "tcp"), default="none")
    check.add_argument("--leader", default="", help="HOST:PORT of the Ray head")
    check.add_argument("--timeout", type=float, default=5.0)
    return parser


def _run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode


def _exec(command: list[str]) -> NoReturn:
    if not command:
        raise LaunchError("no command to run after '--'")
    _say("exec " + " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        raise LaunchError(f"cannot run {command[0]}: {exc}") from exc


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise LaunchError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise LaunchError(f"{what} must be a JSON object")
    return value


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    own, command = _split_command(argv)
    options = _parser().parse_args(own)
    try:
        if options.step == "probe":
            rank = node_rank(options.rank_env, env) if options.rank_env else 0
            healthy = probe(
                url=options.url,
                rank=rank,
                worker_check=options.worker_check,
                leader=options.leader,
                timeout=options.timeout,
            )
            return 0 if healthy else 1
        section = read_section(options.config, options.section) if options.section else {}
        if options.step == "triton-repo":
            engine_args = merge_engine_args(
                _json_object(options.engine_args, "--engine-args"), section
            )
            loras = {str(k): str(v) for k, v in _json_object(options.loras, "--loras").items()}
            where = write_triton_repository(
                options.repository,
                options.model,
                engine_args=engine_args,
                model_config=options.model_config,
                loras=loras,
            )
            _say(f"wrote the model repository {where}")
            return _exec(command)
        command = merge_flags(command, section)
        if options.ray_nodes > 1:
            rank = node_rank(options.rank_env, env)
            if rank > 0:
                return join_ray_cluster(
                    leader=options.ray_leader,
                    port=options.ray_port,
                    gpus=options.num_gpus,
                    timeout=options.join_timeout,
                    interval=options.retry_interval,
                    run=_run,
                )
            start_ray_leader(
                port=options.ray_port,
                nodes=options.ray_nodes,
                gpus=options.num_gpus,
                timeout=options.join_timeout,
                interval=options.retry_interval,
                run=_run,
            )
        return _exec(command)
    except LaunchError as exc:
        _say(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
