"""kaito's operator at 100 and 1,000 workspaces: time to ready, API cost, resync, latency, memory.

    .venv/bin/python benchmarks/control_plane/run.py            # 100 and 1,000 (~10 min, 2 cores)
    .venv/bin/python benchmarks/control_plane/run.py --quick    # 20 workspaces (~30 s)
    .venv/bin/python benchmarks/control_plane/run.py --counts 50,200 --provisioner karpenter

Runs `kaito operator run` in a child process against kaito's API-server emulator and lifecycle
simulators served by this process, applies the workspaces and waits for WorkspaceReady (see
`control_plane_harness.py` for what each figure means). Prints a table and writes the rows as
JSON (default `benchmarks/results/control_plane.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for entry in (str(REPO), str(HERE)):  # run from a checkout without installing kaito
    if entry not in sys.path:
        sys.path.insert(0, entry)

import control_plane_harness as harness  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "control_plane.json"


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("counts must be positive numbers, e.g. 100,1000")
    return counts


def main(argv: list[str] | None = None, *, settings: harness.Settings | None = None) -> int:
    """Run the benchmark as the command line asks; `settings` replaces the presets (tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 workspaces (about 30 seconds)")
    parser.add_argument(
        "--counts", type=_counts, help="workspace counts, comma-separated (default 100,1000)"
    )
    parser.add_argument(
        "--provisioner",
        choices=harness.PROVISIONERS,
        help="fake: nodes Ready at once (default); karpenter: NodeClaims the simulator fulfils",
    )
    parser.add_argument("--concurrency", type=int, help="the operator's --concurrency (4)")
    parser.add_argument("--no-resync", action="store_true", help="skip the restart phase")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    args = parser.parse_args(argv)
    if settings is None:
        settings = harness.QUICK if args.quick else harness.FULL
    changes: dict[str, Any] = {}
    if args.counts is not None:
        changes["counts"] = args.counts
    if args.provisioner is not None:
        changes["provisioner"] = args.provisioner
    if args.concurrency is not None:
        changes["operator_concurrency"] = args.concurrency
    if args.no_resync:
        changes["resync"] = False
    try:
        settings = attrs.evolve(settings, **changes)
    except ValueError as exc:
        parser.error(str(exc))

    def progress(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    result = asyncio.run(harness.run(settings, progress))
    print(harness.format_table(result))
    print()
    for line in harness.format_details(result):
        print(line)
    print(f"\n{len(result.rows)} rows in {result.seconds:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
