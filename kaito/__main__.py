"""`python -m kaito` runs the command line."""

import sys

from kaito.cli import main

sys.exit(main())
