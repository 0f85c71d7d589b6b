"""`python -m kaito.runtimes.hf` as a real process: it binds a free port, loads the tiny model,
answers over HTTP, takes options from the environment, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


@pytest.mark.timeout(60)
def test_the_server_process_serves_and_stops_on_sigterm(phi3_model: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KAITO_SERVED_MODEL_NAME": "phi-3-tiny",
        "KAITO_ADAPTERS_DIR": str(tmp_path / "none"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kaito.runtimes.hf",
            "--model",
            str(phi3_model),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        base = match.group(1)
        deadline = time.monotonic() + 45
        while _get(base + "/health")[0] != 200:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the model never loaded"
            time.sleep(0.1)
        status, models = _get(base + "/v1/models")
        assert status == 200
        assert models["data"][0]["id"] == "phi-3-tiny"
        status, answer = _post(
            base + "/chat",
            {"prompt": "The cat", "generate_kwargs": {"do_sample": False, "max_new_tokens": 4}},
        )
        assert status == 200
        assert answer["Result"].startswith("The cat")
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'kaito_hf_requests_total{endpoint="/chat",status="200"} 1' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
