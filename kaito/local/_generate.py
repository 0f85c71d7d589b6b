"""`python -m kaito.local._generate BASE [--cache-dir DIR]`: make (or find) the tiny model of
preset BASE and print its directory. The local mode runs this in a child process so that torch
is never loaded into the long-running `kaito up` process."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kaito.plugins import default_registry
from kaito.presets import builtin_presets
from kaito.runtimes.hf import TinyModelError, ensure_tiny_model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kaito.local._generate")
    parser.add_argument("base", help="the preset whose architecture the model copies")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    presets = default_registry().presets
    base = presets.get(args.base) or builtin_presets().get(args.base)
    if base is None:
        print(f"unknown preset {args.base!r}", file=sys.stderr)
        return 2
    try:
        path = ensure_tiny_model(base, args.cache_dir)
    except ImportError as exc:
        print(f"generating needs torch and transformers ({exc}): pip install 'kaito[hf]'",
              file=sys.stderr)  # fmt: skip
        return 2
    except TinyModelError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
