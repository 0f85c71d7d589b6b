"""`python -m kaito.tuning`; see `kaito.tuning._cli`."""

from kaito.tuning._cli import main

raise SystemExit(main())
