"""Model sources for the local mode: the generated directory of a tiny preset.

A tiny preset (`Preset.generated_from` set) has no checkpoint to download; its model is made by
`kaito.runtimes.hf.ensure_tiny_model` from the base preset and kept in the model cache
(`$KAITO_CACHE_DIR`, default `~/.cache/kaito/models`). The reconciler then hands the server that
directory instead of a Hugging Face id (`ReconcilerSettings.model_sources`).

Generating imports torch and transformers, which costs seconds and hundreds of megabytes; it
runs in a child process (`python -m kaito.local._generate`) so that the long-running `kaito up`
process never holds them. When the model is already cached the child returns at once.

Real presets need no source: the server loads the preset's Hugging Face id, which works on a
machine with access to the model hub.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from kaito.local._workspace import LocalModeError
from kaito.plugins import Registry
from kaito.presets import Preset


async def generate_model(
    preset: Preset, registry: Registry, *, cache_dir: Path | None = None, python: str | None = None
) -> Path:
    """The directory of a generated preset's model, made on first use (see the module doc).
    Raises `LocalModeError` when the base preset is unknown or generation fails."""
    base_name = preset.generated_from
    if base_name is None:
        raise LocalModeError(f"preset {preset.name} is not a generated preset")
    if base_name not in registry.presets:
        raise LocalModeError(
            f"preset {preset.name} is generated from {base_name}, which is not in the catalog"
        )
    argv = [python or sys.executable, "-m", "kaito.local._generate", base_name]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        raise LocalModeError(
            f"cannot generate the model of {preset.name}: "
            + (detail[-1] if detail else f"exit code {process.returncode}")
        )
    path = Path(out.decode().strip().splitlines()[-1])
    if not await asyncio.to_thread(path.is_dir):
        raise LocalModeError(f"the model of {preset.name} was not generated at {path}")
    return path


async def model_sources(
    preset: Preset | None, registry: Registry, *, cache_dir: Path | None = None
) -> dict[str, str]:
    """`ReconcilerSettings.model_sources` for a workspace's preset: its generated directory
    for a tiny preset, nothing for a real one."""
    if preset is None or not preset.generated:
        return {}
    return {preset.name: str(await generate_model(preset, registry, cache_dir=cache_dir))}
