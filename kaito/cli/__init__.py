"""The `kaito` command line."""

from kaito.cli._main import main

__all__ = ["main"]
