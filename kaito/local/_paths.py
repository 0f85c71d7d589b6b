"""Where the local mode keeps its state: `$KAITO_HOME/local/<workspace>/` (default `~/.kaito`).

One directory per `kaito up`, named after the workspace it was started with, holds everything
of that run: `state.json` (what the other commands read to find it), the kubeconfig of its API
server, the log of the detached process, and per pod the mounted config and adapter
directories and the log file. Nothing outside it is written except the model cache.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "KAITO_HOME"
"""Moves kaito's home directory (default `~/.kaito`)."""

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
DAEMON_LOG = "kaito-up.log"
PODS_DIR = "pods"


def kaito_home() -> Path:
    """`$KAITO_HOME`, else `~/.kaito`."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured) if configured else Path.home() / ".kaito"


def local_root(home: Path | None = None) -> Path:
    """The directory of every local-mode run: `<home>/local`."""
    return (home if home is not None else kaito_home()) / "local"


def session_dir(name: str, home: Path | None = None) -> Path:
    """The directory of the run started for workspace `name`."""
    return local_root(home) / name
