"""kaito-launch, the program the vLLM, TGI and Triton containers start with: merging the inference
config into the server's flags, the leader and worker roles of a multi-node Ray cluster, and the
multi-node probes. The program is run the way containers run it (`python -c <source>`), with a
stand-in `ray` command and `ray` module where Ray would be, and a stand-in server that prints
the arguments it was started with."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kaito.runtimes._common import launcher_source
from kaito.runtimes._launcher import (
    LaunchError,
    merge_engine_args,
    merge_flags,
    node_rank,
    read_section,
)

pytestmark = pytest.mark.timeout(30)

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
SERVER = [sys.executable, "-c", PRINT_ARGV]
"""A stand-in server: prints its arguments as JSON."""


def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", launcher_source(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=20,
        check=False,
    )


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "inference_config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- merging the inference config ---------------------------------------------------------------


def test_config_values_add_the_flags_kaito_does_not_set() -> None:
    merged = merge_flags(
        ["srv", "--port", "5000", "--dtype=float16"],
        {
            "port": 8000,  # kaito's flag wins
            "dtype": "bfloat16",  # also when kaito wrote --dtype=...
            "enable-prefix-caching": True,
            "disable_log_stats": False,
            "max_num_seqs": 8,
            "gpu-memory-utilization": 0.9,
            "lora-modules": ["a=/x", "b=/y"],
            "hf-overrides": {"rope_scaling": None},
            "seed": None,
        },
    )
    assert merged == [
        "srv", "--port", "5000", "--dtype=float16",
        "--enable-prefix-caching",
        "--max-num-seqs", "8",
        "--gpu-memory-utilization", "0.9",
        "--lora-modules", "a=/x", "b=/y",
        "--hf-overrides", '{"rope_scaling": null}',
    ]  # fmt: skip


def test_engine_arguments_keep_kaitos_values() -> None:
    merged = merge_engine_args(
        {"model": "m", "max_model_len": 4096},
        {"max-model-len": 99, "enforce-eager": True, "block_size": 16},
    )
    assert merged == {"model": "m", "max_model_len": 4096, "enforce_eager": True, "block_size": 16}


def test_reading_the_config_section(tmp_path: Path) -> None:
    assert read_section(str(tmp_path / "missing.yaml"), "vllm") == {}
    assert read_section(write_config(tmp_path, ""), "vllm") == {}
    path = write_config(tmp_path, "transformers:\n  max-batch-size: 4\nvllm:\n  max-num-seqs: 8\n")
    assert read_section(path, "vllm") == {"max-num-seqs": 8}
    assert read_section(path, "tgi") == {}
    with pytest.raises(LaunchError, match=r"'vllm' in the inference config .* must be a mapping"):
        read_section(write_config(tmp_path, "vllm: [1, 2]\n"), "vllm")
    with pytest.raises(LaunchError, match="must hold a mapping at the top level"):
        read_section(write_config(tmp_path, "- 1\n"), "vllm")
    with pytest.raises(LaunchError, match="cannot read the inference config"):
        read_section(write_config(tmp_path, "vllm: {\n"), "vllm")


def test_exec_runs_the_server_with_the_merged_flags(tmp_path: Path) -> None:
    config = write_config(tmp_path, "vllm:\n  max-num-seqs: 8\n  port: 1\n")
    done = launch("exec", "--config", config, "--section", "vllm", "--", *SERVER, "--port", "5000")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["--port", "5000", "--max-num-seqs", "8"]
    assert "--port is set by kaito" in done.stderr


def test_exec_without_a_config_file_runs_the_server_as_given(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.yaml")
    done = launch("exec", "--config", missing, "--section", "tgi", "--", *SERVER, "--x", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["--x", "1"]


def test_a_broken_config_stops_the_start_with_a_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, "vllm: nope\n")
    done = launch("exec", "--config", config, "--section", "vllm", "--", *SERVER)
    assert done.returncode == 2
    assert "'vllm' in the inference config" in done.stderr
    assert done.stdout == ""


def test_a_server_that_is_not_there_is_reported() -> None:
    done = launch("exec", "--", "/nonexistent/server")
    assert done.returncode == 2
    assert "cannot run /nonexistent/server" in done.stderr


# -- multi-node: Ray ----------------------------------------------------------------------------


@pytest.fixture
def fake_ray(tmp_path: Path) -> dict[str, str]:
    """A `ray` command that logs its arguments (failing as often as the file `fail` says) and a
    `ray` module whose cluster grows by one node per `nodes()` call, from 1."""
    log = tmp_path / "ray.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "ray"
    command.write_text(
        "#!/bin/sh\n"
        f'echo "ray $*" >> "{log}"\n'
        f'fail="{tmp_path}/fail"\n'
        'if [ -s "$fail" ]; then\n'
        '  n=$(cat "$fail"); echo $((n - 1)) > "$fail"\n'
        '  if [ "$n" -gt 0 ]; then exit 3; fi\n'
        "fi\n"
        "exit 0\n",
        encoding="utf-8",
    )
    command.chmod(0o755)
    module_dir = tmp_path / "py" / "ray"
    module_dir.mkdir(parents=True)
    (module_dir / "__init__.py").write_text(
        "LOG = " + repr(str(log)) + "\n"
        "calls = 0\n"
        "def _log(text):\n"
        "    with open(LOG, 'a') as f:\n"
        "        f.write(text + '\\n')\n"
        "def init(address=None):\n"
        "    _log(f'init {address}')\n"
        "def nodes():\n"
        "    global calls\n"
        "    calls += 1\n"
        "    return [{'Alive': True}] * calls + [{'Alive': False}]\n"
        "def shutdown():\n"
        "    _log('shutdown')\n",
        encoding="utf-8",
    )
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(tmp_path / "py"),
        "LOG": str(log),
        "FAIL": str(tmp_path / "fail"),
    }


def ray_args(rank: str, fake: dict[str, str], *extra: str) -> tuple[list[str], dict[str, str]]:
    args = [
        "exec",
        "--rank-env", "KAITO_NODE_RANK",
        "--ray-nodes", "3",
        "--ray-leader", "ws-0.ws-headless",
        "--num-gpus", "8",
        "--retry-interval", "0.01",
        *extra,
        "--", *SERVER, "--pipeline-parallel-size", "3",
    ]  # fmt: skip
    env = {"PATH": fake["PATH"], "PYTHONPATH": fake["PYTHONPATH"], "KAITO_NODE_RANK": rank}
    return args, env


def test_the_leader_starts_the_head_waits_for_all_nodes_then_serves(
    fake_ray: dict[str, str],
) -> None:
    args, env = ray_args("0", fake_ray)
    done = launch(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["--pipeline-parallel-size", "3"]
    assert Path(fake_ray["LOG"]).read_text().splitlines() == [
        "ray start --head --port=6379 --num-gpus=8",
        "init auto",
        "shutdown",
    ]
    assert "1 of 3 Ray nodes have joined; waiting" in done.stderr
    assert "all 3 Ray nodes have joined" in done.stderr


def test_the_leader_gives_up_when_the_workers_do_not_come(fake_ray: dict[str, str]) -> None:
    args, env = ray_args("0", fake_ray, "--join-timeout", "0")
    done = launch(*args, env=env)
    assert done.returncode == 2
    assert "only 1 of 3 Ray nodes joined within 0 seconds" in done.stderr
    assert done.stdout == ""  # the server never started


def test_a_worker_joins_the_leader_retrying_until_it_is_up(fake_ray: dict[str, str]) -> None:
    Path(fake_ray["FAIL"]).write_text("2")
    args, env = ray_args("2", fake_ray)
    done = launch(*args, env=env)
    assert done.returncode == 0, done.stderr
    join = "ray start --address=ws-0.ws-headless:6379 --num-gpus=8 --block"
    assert Path(fake_ray["LOG"]).read_text().splitlines() == [join, join, join]
    assert done.stdout == ""  # workers do not run the server


def test_a_worker_that_cannot_join_in_time_exits_with_rays_status(
    fake_ray: dict[str, str],
) -> None:
    Path(fake_ray["FAIL"]).write_text("100")
    args, env = ray_args("1", fake_ray, "--join-timeout", "0")
    done = launch(*args, env=env)
    assert done.returncode == 3
    assert len(Path(fake_ray["LOG"]).read_text().splitlines()) == 1


def test_a_missing_rank_is_an_error(fake_ray: dict[str, str]) -> None:
    args, env = ray_args("", fake_ray)
    done = launch(*args, env=env)
    assert done.returncode == 2
    assert "KAITO_NODE_RANK must hold this pod's index, got ''" in done.stderr
    with pytest.raises(LaunchError):
        node_rank("RANK", {"RANK": "-1"})
    assert node_rank("RANK", {"RANK": " 4 "}) == 4


# -- multi-node probes --------------------------------------------------------------------------


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    state = {"status": 200}

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({}, status=state["status"])

    app = web.Application()
    app.router.add_get("/health", health)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/health")), state
    finally:
        await server.close()


async def probe(rank: str, *args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        launcher_source(),
        "probe",
        "--rank-env",
        "KAITO_NODE_RANK",
        "--timeout",
        "2",
        *args,
        env={**os.environ, "KAITO_NODE_RANK": rank},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=20)


async def test_the_leader_is_healthy_when_its_server_answers(
    health_server: tuple[str, dict[str, int]],
) -> None:
    url, state = health_server
    assert await probe("0", "--url", url) == 0
    state["status"] = 503
    assert await probe("0", "--url", url) == 1


async def test_a_worker_is_ready_when_the_ray_head_accepts_connections(
    health_server: tuple[str, dict[str, int]],
) -> None:
    url, state = health_server
    state["status"] = 503  # a worker does not look at the HTTP server
    head = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = head.sockets[0].getsockname()[1]
    try:
        leader = f"127.0.0.1:{port}"
        assert await probe("1", "--url", url, "--worker-check", "tcp", "--leader", leader) == 0
        assert await probe("1", "--url", url, "--worker-check", "none") == 0
    finally:
        head.close()
        await head.wait_closed()
    assert await probe("1", "--url", url, "--worker-check", "tcp", "--leader", leader) == 1
    assert await probe("x", "--url", url) == 2
