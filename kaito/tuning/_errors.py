"""Why a tuning run stops, one class per thing the user has to fix, each with its exit code.

    TuningError
    ├── ConfigError     the tuning config or the command line            exit 2
    ├── DataError       the training data (files, rows, URLs)            exit 3
    │   └── DownloadError   a data URL could not be fetched
    ├── ModelError      the model cannot be loaded or quantized          exit 4
    └── OutputError     the adapter cannot be written or pushed          exit 5

Registry failures (`kaito.oci.OCIError`) during a push are reported as `OutputError` with the
registry's error chained; when they happen while pulling data they are a `DataError`.
"""

from __future__ import annotations


class TuningError(Exception):
    """Base of the errors that end a tuning run with a message instead of a traceback."""

    exit_code = 1


class ConfigError(TuningError, ValueError):
    """The tuning config or a command-line option is invalid; the message names each field."""

    exit_code = 2


class DataError(TuningError):
    """The training data is missing, unreadable, or has no usable row."""

    exit_code = 3


class DownloadError(DataError):
    """A data URL could not be downloaded (unreachable, HTTP error, too large, bad checksum)."""


class ModelError(TuningError):
    """The base model cannot be loaded, or not the way the config asks (QLoRA without CUDA)."""

    exit_code = 4


class OutputError(TuningError):
    """The adapter could not be written to the output directory or pushed to the registry."""

    exit_code = 5
