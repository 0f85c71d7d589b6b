"""`kaito`: the entry point that parses arguments and dispatches to a command module.

Each command module contributes its sub-commands through `register(subparsers)`, and each
command is a function `(args, registry) -> exit code`. Errors a user can fix are `CliError`s,
printed as one line on standard error; a traceback means a bug in kaito.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kaito._version import __version__
from kaito.cli import _catalog, _emulator, _local, _operator
from kaito.cli._common import CliError
from kaito.plugins import PluginError, default_registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaito",
        description="kaito: workspaces for AI models on Kubernetes, or on this machine.",
    )
    parser.add_argument("--version", action="version", version=f"kaito {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _catalog.register(sub)
    _operator.register(sub)
    _emulator.register(sub)
    _local.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        registry = default_registry()
        code: int = args.func(args, registry)
    except CliError as exc:
        print(f"kaito: error: {exc}", file=sys.stderr)
        return exc.code
    except PluginError as exc:
        print(f"kaito: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
