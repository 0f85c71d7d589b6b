"""`python -m kaito.tuning`: one tuning run, from data to a pushed adapter.

The order is chosen so that what can fail fast does, before a model loads for minutes:
options and config, then push access to the output image (a wrong push secret is reported
before training, not after), then the data (downloaded or pulled, then read and checked), then
the model, training, and finally writing and pushing the adapter.

Every option is a flag or an environment variable `KAITO_TUNING_<FLAG>` (the flag wins), so the
reconciler can set them either way. Failures end with one `error:` log line and the exit code of
their kind (see `kaito.tuning._errors`); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from kaito.oci import (
    BASE_MODEL_ANNOTATION,
    METHOD_ANNOTATION,
    OCIError,
    PushedArtifact,
    Reference,
    RegistryAuth,
    RegistryOptions,
    check_push_access,
    pull_data,
    push_adapter,
)
from kaito.tuning._config import Method, TuningConfig, load_config
from kaito.tuning._data import load_conversations
from kaito.tuning._download import DownloadPolicy, fetch_urls
from kaito.tuning._errors import ConfigError, DataError, OutputError, TuningError
from kaito.tuning._progress import TuningMetrics
from kaito.tuning._result import TrainingResult

log = logging.getLogger("kaito.tuning")

ENV_PREFIX = "KAITO_TUNING_"
LOG_LEVELS = ("debug", "info", "warning", "error")


@attrs.frozen(kw_only=True)
class TuningOptions:
    """Everything one run is told; see `python -m kaito.tuning --help`."""

    preset: str | None = None
    model: str | None = None
    method: Method = Method.LORA
    config: Path | None = None
    data_dir: Path | None = None
    data_urls: tuple[str, ...] = ()
    data_image: str | None = None
    data_pull_secrets: tuple[Path, ...] = ()
    """Docker configs for --data-image; the first with the registry is used."""
    output_dir: Path | None = None
    push: str | None = None
    push_secret: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    plain_http: bool | None = None
    max_download_bytes: int = DownloadPolicy().max_bytes
    download_attempts: int = DownloadPolicy().attempts
    log_level: str = "info"
    cache_dir: Path | None = None
    """Where generated (tiny) preset models are kept; default `$KAITO_CACHE_DIR`."""


@attrs.frozen
class TuningOutcome:
    training: TrainingResult
    pushed: PushedArtifact | None
    """The pushed artifact, with `--push`."""


_EPILOG = """\
data: files under the data directory (--data-dir: a mounted volume, or where --data-url
  downloads and --data-image pulls go), read as parquet, JSON lines, JSON or CSV by extension.
  Rows are chat conversations ('messages': [{role, content}, ...]) or instruction/response
  pairs ('instruction', 'response', optional context column); DatasetConfig names other
  columns. Only the assistant's turns are learned; rows longer than max_seq_length (default:
  the model's context) are left out. URLs are http(s) only and may end in #sha256=<hex>.
config: the workspace's tuning ConfigMap YAML (training_config: ModelConfig,
  QuantizationConfig, LoraConfig, TrainingArguments, DataCollator, DatasetConfig), merged over
  kaito's defaults for --method. Unknown keys and wrong types are errors.
qlora: 4-bit loading needs a CUDA GPU and bitsandbytes. Without them the run fails, unless
  QuantizationConfig.fallback_to_lora is true: then it trains plain LoRA and logs so.
output: adapter_config.json and adapter_model.safetensors in --output-dir (or
  TrainingArguments.output_dir); with --push also pushed as a kaito adapter artifact, using
  the docker config in --push-secret. Push access is checked before training.
progress: one log line per logging step (TrainingArguments.logging_steps) with loss, learning
  rate and ETA; Prometheus metrics kaito_tuning_* on --metrics-port.
environment: every flag can be set as KAITO_TUNING_<FLAG> (e.g. KAITO_TUNING_DATA_URLS, space-
  or comma-separated); the flag wins.
exit codes: 0 done, 2 options or config, 3 data, 4 model, 5 output or push, 1 other.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kaito.tuning",
        description="Fine-tune a preset model with LoRA or QLoRA and write or push the adapter.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    add = parser.add_argument
    add("--preset", metavar="NAME", help="preset to tune (kaito's catalog)")
    add("--model", metavar="PATH_OR_ID", help="model directory or Hugging Face id")
    add("--method", choices=[m.value for m in Method], help="lora or qlora [lora]")
    add("--config", metavar="PATH", help="tuning config YAML (the tuning ConfigMap)")
    add("--data-dir", metavar="DIR", help="directory with the data (and for downloads)")
    add("--data-url", metavar="URL", action="append", help="data URL (repeatable)")
    add("--data-image", metavar="REF", help="OCI artifact or image with the data")
    add(
        "--data-pull-secret",
        metavar="PATH",
        action="append",
        help="docker config to pull --data-image (repeatable: the first with the registry)",
    )
    add("--output-dir", metavar="DIR", help="where the adapter is written")
    add("--push", metavar="IMAGE", help="push the adapter to this OCI reference")
    add("--push-secret", metavar="PATH", help="docker config (dockerconfigjson) for --push")
    add("--metrics-port", metavar="PORT", help="serve Prometheus metrics (0: a free port)")
    add("--metrics-host", metavar="HOST", help="address of the metrics endpoint [0.0.0.0]")
    add(
        "--plain-http",
        action=argparse.BooleanOptionalAction,
        help="registries over HTTP [only loopback registries]",
    )
    add("--max-download-bytes", metavar="N", help="size limit per data URL [20 GiB]")
    add("--download-attempts", metavar="N", help="tries per data URL [4]")
    add("--log-level", choices=LOG_LEVELS, help="logging level [info]")
    return parser


_FLAGS = (
    "preset",
    "model",
    "method",
    "config",
    "data_dir",
    "data_url",
    "data_image",
    "data_pull_secret",
    "output_dir",
    "push",
    "push_secret",
    "metrics_port",
    "metrics_host",
    "plain_http",
    "max_download_bytes",
    "download_attempts",
    "log_level",
)
"""Each flag's destination; its environment variable is KAITO_TUNING_<DEST> (DATA_URLS for
the repeatable --data-url)."""


def _bool(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {text!r}")


def _int(text: str, name: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> TuningOptions:
    """Options from flags, then `KAITO_TUNING_*` variables; raises `ConfigError`."""
    env = os.environ if environ is None else environ
    given = vars(_parser().parse_args(argv))
    raw: dict[str, object] = {}
    for dest in _FLAGS:
        variable = ENV_PREFIX + ("DATA_URLS" if dest == "data_url" else dest.upper())
        if dest in given:
            raw[dest] = given[dest]
        elif env.get(variable):
            text = env[variable]
            listed = dest in ("data_url", "data_pull_secret")
            raw[dest] = re.split(r"[\s,]+", text.strip()) if listed else text
    values: dict[str, object] = {}
    for key in ("preset", "model", "data_image", "push", "metrics_host"):
        if key in raw:
            values[key] = str(raw[key])
    for key in ("config", "data_dir", "output_dir", "push_secret"):
        if key in raw:
            values[key] = Path(str(raw[key]))
    if "data_pull_secret" in raw:
        secrets = raw["data_pull_secret"]
        assert isinstance(secrets, list)
        values["data_pull_secrets"] = tuple(Path(str(s)) for s in secrets if str(s))
    if "method" in raw:
        try:
            values["method"] = Method(str(raw["method"]))
        except ValueError:
            raise ConfigError(f"method must be lora or qlora, got {raw['method']!r}") from None
    if "data_url" in raw:
        urls = raw["data_url"]
        assert isinstance(urls, list)
        values["data_urls"] = tuple(str(u) for u in urls if str(u))
    if "metrics_port" in raw:
        port = _int(str(raw["metrics_port"]), "--metrics-port", 0)
        if port > 65535:
            raise ConfigError(f"--metrics-port must be at most 65535, got {port}")
        values["metrics_port"] = port
    if "plain_http" in raw:
        plain = raw["plain_http"]
        values["plain_http"] = plain if isinstance(plain, bool) else _bool(str(plain), "plain-http")
    if "max_download_bytes" in raw:
        values["max_download_bytes"] = _int(
            str(raw["max_download_bytes"]), "--max-download-bytes", 1
        )
    if "download_attempts" in raw:
        values["download_attempts"] = _int(str(raw["download_attempts"]), "--download-attempts", 1)
    if "log_level" in raw:
        level = str(raw["log_level"]).lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        values["log_level"] = level
    if "KAITO_CACHE_DIR" in env:
        values["cache_dir"] = Path(env["KAITO_CACHE_DIR"])
    return TuningOptions(**values)  # type: ignore[arg-type]


def _push_target(
    options: TuningOptions,
) -> tuple[Reference, RegistryAuth | None] | None:
    if options.push is None:
        return None
    try:
        reference = Reference.parse(options.push)
        auth = (
            RegistryAuth.from_docker_config(options.push_secret, reference.registry)
            if options.push_secret is not None
            else None
        )
    except OCIError as exc:
        raise ConfigError(f"--push: {exc}") from exc
    return reference, auth


def _gather_data(options: TuningOptions, scratch: Path) -> Path:
    """The data directory, with URL downloads and the data image's files in it."""
    if options.data_dir is None and not options.data_urls and options.data_image is None:
        raise ConfigError("no training data: pass --data-dir, --data-url or --data-image")
    data_dir = options.data_dir or scratch / "data"
    if options.data_urls:
        policy = DownloadPolicy(
            max_bytes=options.max_download_bytes, attempts=options.download_attempts
        )
        fetch_urls(options.data_urls, data_dir, policy)
    if options.data_image is not None:
        try:
            reference = Reference.parse(options.data_image)
            auth = (
                RegistryAuth.from_docker_configs(options.data_pull_secrets, reference.registry)
                if options.data_pull_secrets
                else None
            )
            pull_data(
                reference, data_dir, auth, options=RegistryOptions(plain_http=options.plain_http)
            )
        except OCIError as exc:
            raise DataError(f"cannot pull the data image {options.data_image}: {exc}") from exc
    return data_dir


def run_tuning(options: TuningOptions, *, metrics: TuningMetrics | None = None) -> TuningOutcome:
    """One tuning run (see the module doc); raises a `TuningError` subclass on failure."""
    config: TuningConfig = load_config(options.config, options.method)
    if config.method is not options.method:
        log.info("the config's QuantizationConfig makes this a %s run", config.method.value)
    output_dir = options.output_dir or (
        Path(config.training.output_dir) if config.training.output_dir else None
    )
    if output_dir is None:
        raise ConfigError(
            "no output directory: pass --output-dir or set TrainingArguments.output_dir"
        )
    registry_options = RegistryOptions(plain_http=options.plain_http)
    target = _push_target(options)
    if target is not None:
        try:
            check_push_access(target[0], target[1], options=registry_options)
        except OCIError as exc:
            raise OutputError(f"cannot push to {target[0]}: {exc}") from exc
        log.info("push access to %s confirmed", target[0])
    from kaito.tuning._model import resolve_model

    source = resolve_model(preset=options.preset, model=options.model, cache_dir=options.cache_dir)
    scratch = Path(tempfile.mkdtemp(prefix="kaito-tuning-"))
    server = None
    try:
        data_dir = _gather_data(options, scratch)
        loaded = load_conversations(data_dir, config.dataset)
        from kaito.tuning._train import train_adapter

        metrics = metrics or TuningMetrics()
        if options.metrics_port is not None:
            server = metrics.serve(options.metrics_port, options.metrics_host)
            log.info("metrics on http://%s:%d/metrics", options.metrics_host, server.port)
        result = train_adapter(source, loaded.conversations, config, output_dir, metrics=metrics)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(scratch, ignore_errors=True)
    pushed = None
    if target is not None:
        annotations = {BASE_MODEL_ANNOTATION: result.base_model, METHOD_ANNOTATION: result.method}
        try:
            pushed = push_adapter(
                output_dir, target[0], target[1], annotations=annotations, options=registry_options
            )
        except OCIError as exc:
            raise OutputError(f"cannot push the adapter to {target[0]}: {exc}") from exc
        log.info("pushed the adapter to %s@%s", pushed.reference, pushed.digest)
    return TuningOutcome(result, pushed)


def _configure_logging(level: str) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kaito").setLevel(level.upper())


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run `python -m kaito.tuning`; returns the exit code."""
    try:
        options = parse_options(argv, environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    _configure_logging(options.log_level)
    try:
        run_tuning(options)
    except TuningError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    return 0
