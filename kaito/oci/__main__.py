"""`python -m kaito.oci push|pull ...`; see `kaito.oci._cli`."""

from kaito.oci._cli import main

raise SystemExit(main())
