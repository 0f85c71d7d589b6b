"""Shared test configuration.

- pytester, for tests that run pytest on a user's test file.
- hypothesis without per-example deadlines: the machines are shared and noisy, and a slow
  example is not a wrong one (speed is measured in benchmarks/, never asserted in tests).
"""

from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("kaito", deadline=None, print_blob=True)
settings.load_profile("kaito")
