"""Throughput and latency of kaito's API-server emulator, with and without HTTP.

    .venv/bin/python benchmarks/emulator/run.py            # the full run (~3 minutes, 2 cores)
    .venv/bin/python benchmarks/emulator/run.py --quick    # a smoke-sized run (~20 s)

Measures creates, gets, lists, updates, merge patches and watch fan-out on the emulator's store
directly, on an emulator served in this process, and on one served by a child process (see
`emulator_harness.py` for what each configuration shows). Prints a table and writes the rows as JSON
(default `benchmarks/results/emulator.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for entry in (str(REPO), str(HERE)):  # run from a checkout without installing kaito
    if entry not in sys.path:
        sys.path.insert(0, entry)

import emulator_harness as harness  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "emulator.json"


def main(argv: list[str] | None = None, *, sizes: harness.Sizes | None = None) -> int:
    """Run the benchmark as the command line asks; `sizes` overrides --quick (for tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (about 20 seconds)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    parser.add_argument(
        "--config",
        action="append",
        choices=harness.CONFIGS,
        help="run only this configuration (repeatable; default: all three)",
    )
    args = parser.parse_args(argv)
    if sizes is None:
        sizes = harness.QUICK if args.quick else harness.FULL
    configs = tuple(args.config) if args.config else harness.CONFIGS

    def progress(message: str) -> None:
        print(f"  .. {message}", file=sys.stderr, flush=True)

    result = asyncio.run(harness.run(sizes, configs, progress))
    print(harness.format_table(result))
    capacity = harness.capacity_summary(result)
    if capacity:
        print("\nServer CPU per operation turned into capacity (subprocess configuration):")
        for line in capacity:
            print(f"  {line}")
    print(f"\n{len(result.rows)} rows in {result.seconds:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
