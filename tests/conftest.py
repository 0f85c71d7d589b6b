"""Shared test configuration: pytester for tests that run pytest on a user's test file."""

pytest_plugins = ["pytester"]
