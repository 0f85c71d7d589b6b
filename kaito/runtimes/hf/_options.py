"""The server's options: command-line flags, environment variables and the inference config file.

A container is configured three ways at once: the runtime writes flags into its command, the
reconciler may add environment variables, and the workspace's ConfigMap is mounted as a YAML
file. Every option can therefore come from each of them, with one rule for who wins:

    command line  >  environment (KAITO_<FLAG>)  >  config file (`transformers:`)  >  default

Each option is declared once in `_OPTIONS`; the flag, the environment variable, the config key
and the --help text are all derived from that one line, so they cannot drift apart. Parsing is
pure (argv and environ are arguments) and imports nothing heavy, which lets the runtime plugin
build a command line with `ServerOptions.to_args()` without torch installed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from kaito.runtimes._protocol import ADAPTERS_DIR, INFERENCE_PORT

ENV_PREFIX = "KAITO_"
CONFIG_SECTION = "transformers"
"""The key of the inference config file that holds this server's options."""

DTYPES = ("auto", "float32", "float16", "bfloat16")
LOG_LEVELS = ("debug", "info", "warning", "error")


class OptionsError(ValueError):
    """An option has a value the server cannot use; the message names the option and source."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"must be zero or a positive integer, got {text}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port number (0-65535, 0 picks a free one), got {text}")
    return value


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


@attrs.frozen
class _Option:
    name: str
    parse: Callable[[str], Any]
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


_OPTIONS: tuple[_Option, ...] = (
    _Option("model", _text, "model directory or Hugging Face id to load", metavar="PATH_OR_ID"),
    _Option("host", _text, "address to listen on"),
    _Option("port", _port, "port to listen on (0 picks a free port and logs it)"),
    _Option("dtype", str, "weights dtype; auto keeps the checkpoint's", choices=DTYPES),
    _Option(
        "max_model_len",
        _positive_int,
        "token limit of prompt plus completion (default: the model's context length)",
    ),
    _Option(
        "adapters_dir",
        str,
        "directory of LoRA adapters, one sub-directory each (missing or empty: no adapters)",
        metavar="DIR",
    ),
    _Option(
        "config", str, "inference config YAML whose 'transformers' section sets options (optional)"
    ),
    _Option("max_batch_size", _positive_int, "most requests generating at the same time"),
    _Option(
        "max_queue",
        _non_negative_int,
        "most requests waiting for a batch slot; one more is answered 429",
    ),
    _Option(
        "max_new_tokens",
        _positive_int,
        "most tokens one request may generate; also the default when a request sets none",
    ),
    _Option(
        "served_model_name",
        _text,
        "model name in the API (default: the model directory's name, or the Hugging Face id)",
    ),
    _Option(
        "chat_template", str, "file with a Jinja chat template to use instead of the tokenizer's"
    ),
    _Option("log_level", str, "logging level", choices=LOG_LEVELS),
)
_BY_NAME = {option.name: option for option in _OPTIONS}


@attrs.frozen(kw_only=True)
class ServerOptions:
    """Everything `python -m kaito.runtimes.hf` can be told; see `--help` for each option."""

    model: str
    host: str = "0.0.0.0"
    port: int = INFERENCE_PORT
    dtype: str = "auto"
    max_model_len: int | None = None
    adapters_dir: str = ADAPTERS_DIR
    config: str | None = None
    max_batch_size: int = 16
    max_queue: int = 256
    max_new_tokens: int = 1024
    served_model_name: str | None = None
    chat_template: str | None = None
    log_level: str = "info"

    @property
    def model_name(self) -> str:
        """The name clients use in `model`: the served name, else the directory's name, else the
        Hugging Face id as given."""
        if self.served_model_name:
            return self.served_model_name
        path = Path(self.model)
        if path.is_dir():
            return path.resolve().name
        return self.model

    def to_args(self) -> list[str]:
        """The command-line flags that reproduce these options (defaults left out)."""
        args: list[str] = []
        defaults = ServerOptions(model=self.model)
        for option in _OPTIONS:
            value = getattr(self, option.name)
            if option.name != "model" and (
                value is None or value == getattr(defaults, option.name)
            ):
                continue
            args += [option.flag, str(value)]
        return args


def _build_parser() -> argparse.ArgumentParser:
    defaults = ServerOptions(model="")
    parser = argparse.ArgumentParser(
        prog="python -m kaito.runtimes.hf",
        description=(
            "kaito's inference server for Hugging Face transformers models: the legacy /chat "
            "API and an OpenAI-compatible API (/v1/chat/completions, /v1/completions, "
            "/v1/models) with continuous batching, LoRA adapters, /health and /metrics."
        ),
        epilog=(
            "Every option can also be set with the environment variable shown, or as a key of "
            f"the '{CONFIG_SECTION}' section of the --config file (e.g. max-batch-size: 8). "
            "The command line wins over the environment, which wins over the file. Adapter "
            "strengths: KAITO_ADAPTER_STRENGTHS='{\"name\": 0.5}', else a 'strength' file in "
            "the adapter's directory, else an environment variable named like the adapter, "
            "else 1.0."
        ),
        argument_default=argparse.SUPPRESS,
    )
    for option in _OPTIONS:
        default = getattr(defaults, option.name)
        if option.name == "model":
            shown = "required; "
        elif default is not None:
            shown = f"default: {default}; "
        else:
            shown = ""
        parser.add_argument(
            option.flag,
            dest=option.name,
            type=str,
            choices=option.choices,
            metavar=option.metavar or (None if option.choices else option.name.upper()),
            help=f"{option.help} [{shown}env {option.env}]",
        )
    return parser


def _config_values(path: str) -> dict[str, str]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise OptionsError(f"cannot read the config file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise OptionsError(f"the config file {path} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise OptionsError(f"the config file {path} must hold a mapping at the top level")
    section = raw.get(CONFIG_SECTION)
    if section is None:
        return {}  # the file may only configure other runtimes (e.g. a vllm section)
    if not isinstance(section, dict):
        raise OptionsError(f"'{CONFIG_SECTION}' in {path} must be a mapping")
    values: dict[str, str] = {}
    for key, value in section.items():
        name = str(key).replace("-", "_")
        if name not in _BY_NAME or name == "config":
            known = ", ".join(o.name.replace("_", "-") for o in _OPTIONS if o.name != "config")
            raise OptionsError(
                f"unknown option {key!r} in {path} ({CONFIG_SECTION}); known: {known}"
            )
        if isinstance(value, dict | list) or value is None:
            raise OptionsError(f"option {key!r} in {path} must be a single value")
        values[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def parse_options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServerOptions:
    """Options from the command line, the environment and the config file, in that precedence.

    Raises `OptionsError` for a missing model, a bad value or an unreadable config file; `--help`
    exits through argparse as usual.
    """
    env = os.environ if environ is None else environ
    parsed = vars(_build_parser().parse_args(argv))
    raw: dict[str, tuple[str, str]] = {}  # name -> (text, where it came from)
    config_path = parsed.get("config") or env.get(_BY_NAME["config"].env)
    if config_path:
        for name, text in _config_values(config_path).items():
            raw[name] = (text, f"{config_path} ({CONFIG_SECTION}.{name.replace('_', '-')})")
    for option in _OPTIONS:
        if option.env in env:
            raw[option.name] = (env[option.env], f"environment variable {option.env}")
    for name, text in parsed.items():
        raw[name] = (text, f"flag {_BY_NAME[name].flag}")
    if "model" not in raw:
        raise OptionsError(
            f"no model given: pass --model PATH_OR_ID or set {_BY_NAME['model'].env}"
        )
    values: dict[str, Any] = {}
    for name, (text, source) in raw.items():
        option = _BY_NAME[name]
        if option.choices is not None and text not in option.choices:
            raise OptionsError(
                f"{source}: must be one of {', '.join(option.choices)}, got {text!r}"
            )
        try:
            values[name] = option.parse(text)
        except ValueError as exc:
            raise OptionsError(f"{source}: {exc}") from None
    return ServerOptions(**values)
