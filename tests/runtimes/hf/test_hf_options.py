"""Server options from flags, environment variables and the config file, and their precedence;
the package facade and its light import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import kaito.runtimes.hf as hf
from kaito.runtimes.hf import OptionsError, ServerOptions, parse_options


def test_defaults() -> None:
    options = parse_options(["--model", "/weights"], {})
    assert options == ServerOptions(model="/weights")
    assert (options.host, options.port, options.adapters_dir) == ("0.0.0.0", 5000, "/mnt/adapter")
    assert options.max_batch_size == 16
    assert options.max_queue == 256


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    config = tmp_path / "inference_config.yaml"
    config.write_text(
        "vllm:\n  gpu-memory-utilization: 0.9\n"
        "transformers:\n  max-batch-size: 4\n  max_queue: 9\n  dtype: float16\n  port: 7000\n"
    )
    env = {"KAITO_MODEL": "org/model", "KAITO_MAX_QUEUE": "11", "KAITO_PORT": "6000"}
    options = parse_options(["--config", str(config), "--port", "5001"], env)
    assert options.model == "org/model"  # environment
    assert options.max_batch_size == 4  # config file
    assert options.dtype == "float16"  # config file
    assert options.max_queue == 11  # environment beats the file
    assert options.port == 5001  # flag beats both
    assert options.config == str(config)


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("transformers:\n  served-model-name: phi\n")
    options = parse_options(["--model", "m"], {"KAITO_CONFIG": str(config)})
    assert options.served_model_name == "phi"
    assert options.model_name == "phi"


@pytest.mark.parametrize(
    ("argv", "env", "config", "message"),
    [
        ([], {}, None, "no model given"),
        (["--model", "m", "--port", "http"], {}, None, "flag --port: must be an integer"),
        (["--model", "m"], {"KAITO_MAX_BATCH_SIZE": "0"}, None, "KAITO_MAX_BATCH_SIZE"),
        (["--model", "m"], {"KAITO_DTYPE": "int4"}, None, "must be one of"),
        (["--model", "m", "--port", "70000"], {}, None, "port number"),
        (["--model", "m"], {}, "transformers: [1]\n", "must be a mapping"),
        (["--model", "m"], {}, "transformers:\n  max-batch: 3\n", "unknown option 'max-batch'"),
        (["--model", "m"], {}, "transformers:\n  max-queue: [1]\n", "single value"),
        (["--model", "m"], {}, "transformers:\n  max-queue: -1\n", "max-queue"),
        (["--model", "m"], {}, ": : :\n", "not valid YAML"),
        (["--model", "m"], {}, "- a\n", "mapping at the top level"),
    ],
)
def test_bad_values_name_their_source(
    tmp_path: Path, argv: list[str], env: dict[str, str], config: str | None, message: str
) -> None:
    if config is not None:
        path = tmp_path / "c.yaml"
        path.write_text(config)
        argv = [*argv, "--config", str(path)]
    with pytest.raises(OptionsError, match=message):
        parse_options(argv, env)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cannot read the config file"):
        parse_options(["--model", "m", "--config", str(tmp_path / "nope.yaml")], {})


def test_to_args_round_trips() -> None:
    options = ServerOptions(
        model="/weights", port=0, max_batch_size=4, served_model_name="phi", max_model_len=2048
    )
    args = options.to_args()
    assert args[:2] == ["--model", "/weights"]
    assert "--host" not in args  # defaults are left out
    assert parse_options(args, {}) == options


def test_the_model_name_defaults_to_the_directory_or_the_id(tmp_path: Path) -> None:
    (tmp_path / "phi-3").mkdir()
    assert ServerOptions(model=str(tmp_path / "phi-3")).model_name == "phi-3"
    assert ServerOptions(model="microsoft/Phi-3-mini-4k-instruct").model_name == (
        "microsoft/Phi-3-mini-4k-instruct"
    )


def test_help_documents_every_flag_and_its_variable() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kaito.runtimes.hf", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--model",
        "--port",
        "--host",
        "--dtype",
        "--max-model-len",
        "--adapters-dir",
        "--config",
        "--max-batch-size",
        "--max-queue",
        "--served-model-name",
    ):
        assert flag in out, flag
        env = "KAITO_" + flag[2:].replace("-", "_").upper()
        assert env in out, env
    assert "KAITO_ADAPTER_STRENGTHS" in " ".join(out.split())


def test_bad_options_exit_2_without_loading_anything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kaito.runtimes.hf", "--model", "m", "--max-queue", "lots"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--max-queue: must be an integer" in result.stderr


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(hf.__all__) == {
        "CACHE_ENV",
        "STRENGTHS_ENV",
        "STRENGTH_FILE",
        "OptionsError",
        "ServerOptions",
        "TinyModelError",
        "TinySize",
        "create_app",
        "default_cache_dir",
        "ensure_tiny_model",
        "generate_tiny_model",
        "parse_options",
        "wait_until_loaded",
    }


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys, kaito.runtimes; before = set(sys.modules); import kaito.runtimes.hf; "
        "new = set(sys.modules) - before; print(','.join(m for m in ('torch', 'transformers', "
        "'peft', 'tokenizers', 'aiohttp') if m in sys.modules and (m != 'aiohttp' or m in new)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
