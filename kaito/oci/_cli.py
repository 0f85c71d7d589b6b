"""`python -m kaito.oci`: push an adapter directory, pull an adapter or data.

An adapter init container runs `python -m kaito.oci pull REF /mnt/adapter/NAME`; a tuning job
pushes through the library, and people push adapters they trained elsewhere with
`python -m kaito.oci push DIR REF`. Credentials come from a docker config file, which is what a
mounted `kubernetes.io/dockerconfigjson` secret is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from kaito.oci._auth import RegistryAuth
from kaito.oci._client import RegistryOptions, pull_adapter, pull_data, push_adapter
from kaito.oci._errors import (
    ArtifactError,
    ArtifactNotFoundError,
    AuthenticationError,
    OCIError,
    RegistryError,
    RegistryUnreachableError,
)
from kaito.oci._reference import Reference

AUTH_FILE_ENV = "KAITO_OCI_AUTH_FILE"

EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CONTENT = 4
EXIT_REGISTRY = 5

log = logging.getLogger("kaito.oci")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kaito.oci",
        description="Push and pull LoRA adapters (and data) as OCI artifacts.",
        epilog=(
            "Exit codes: 0 done; 2 bad arguments, reference or credentials file; 3 "
            "authentication failed; 4 not found or not an adapter; 5 registry unreachable or "
            f"failing. Credentials: --auth-file, else ${AUTH_FILE_ENV}; a docker config file "
            "or a directory holding .dockerconfigjson. Registries on a loopback address are "
            "spoken to over plain HTTP unless --no-plain-http."
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--auth-file",
        metavar="PATH",
        action="append",
        help="docker config with credentials (repeatable: the first with the registry is used)",
    )
    common.add_argument(
        "--plain-http",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="HTTP instead of HTTPS (default: only for localhost and loopback addresses)",
    )
    common.add_argument("--attempts", type=int, default=4, help="tries per request [4]")
    common.add_argument("--quiet", action="store_true", help="log only errors")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser(
        "push", parents=[common], help="push an adapter directory as a kaito adapter artifact"
    )
    push.add_argument("directory", help="adapter directory (adapter_config.json, ...)")
    push.add_argument("reference", help="REGISTRY/REPOSITORY:TAG")
    push.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="manifest annotation (repeatable)",
    )
    pull = commands.add_parser("pull", parents=[common], help="pull an adapter (or data)")
    pull.add_argument("reference", help="REGISTRY/REPOSITORY[:TAG][@DIGEST]")
    pull.add_argument("destination", help="directory to create (must be missing or empty)")
    pull.add_argument(
        "--data",
        action="store_true",
        help="pull any files (data) instead of an adapter; the destination may hold files",
    )
    return parser


def _auth(paths: Sequence[str], reference: Reference) -> RegistryAuth | None:
    return RegistryAuth.from_docker_configs(paths, reference.registry) if paths else None


def _exit_code(error: OCIError) -> int:
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, ArtifactNotFoundError | ArtifactError):
        return EXIT_CONTENT
    if isinstance(error, RegistryError | RegistryUnreachableError):
        return EXIT_REGISTRY
    return EXIT_USAGE  # a bad reference, credentials file or destination


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    env = os.environ if environ is None else environ
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.attempts < 1:
        print("error: --attempts must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    options = RegistryOptions(plain_http=args.plain_http, attempts=args.attempts)
    auth_files = list(args.auth_file or ([env[AUTH_FILE_ENV]] if env.get(AUTH_FILE_ENV) else []))
    try:
        reference = Reference.parse(args.reference)
        auth = _auth(auth_files, reference)
        if args.command == "push":
            annotations: dict[str, str] = {}
            for item in args.annotation:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    print(f"error: --annotation {item!r} is not KEY=VALUE", file=sys.stderr)
                    return EXIT_USAGE
                annotations[key] = value
            pushed = push_adapter(
                args.directory, reference, auth, annotations=annotations, options=options
            )
            print(f"{pushed.reference}@{pushed.digest}")
        elif args.data:
            files = pull_data(reference, args.destination, auth, options=options)
            print(f"{len(files)} files in {args.destination}")
        else:
            print(pull_adapter(reference, args.destination, auth, options=options))
    except OCIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _exit_code(exc)
    return 0
