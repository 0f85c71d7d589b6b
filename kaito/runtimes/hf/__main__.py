"""`python -m kaito.runtimes.hf`: the inference server's entry point (see `--help`)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from kaito.runtimes.hf._options import OptionsError, parse_options


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(argv)
    except OptionsError as exc:
        print(f"kaito-hf: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Imported here: torch and transformers load only once the options are known to be good.
    from kaito.runtimes.hf._server import serve

    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
