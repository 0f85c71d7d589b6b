"""`python -m kaito.tuning`: options from flags and environment, and each failure's message
and exit code, all before (or without) any training."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tuning_data import chat_rows, write_rows

from kaito.tuning import ConfigError, Method, main, parse_options
from tests.oci.oci_registry import push_image
from tests.tuning.conftest import REGISTRY_PASSWORD, REGISTRY_USER, TINY_PRESET

pytestmark = pytest.mark.timeout(60)


def test_flags_win_over_the_environment() -> None:
    env = {
        "KAITO_TUNING_PRESET": "from-env",
        "KAITO_TUNING_METHOD": "qlora",
        "KAITO_TUNING_DATA_URLS": "http://a/x.csv, http://b/y.csv\nhttp://c/z.csv",
        "KAITO_TUNING_METRICS_PORT": "9100",
        "KAITO_TUNING_PLAIN_HTTP": "true",
        "KAITO_CACHE_DIR": "/cache",
    }
    options = parse_options(["--preset", "from-flag", "--output-dir", "/out"], env)
    assert options.preset == "from-flag"
    assert options.method is Method.QLORA
    assert options.data_urls == ("http://a/x.csv", "http://b/y.csv", "http://c/z.csv")
    assert options.metrics_port == 9100
    assert options.plain_http is True
    assert options.output_dir == Path("/out")
    assert options.cache_dir == Path("/cache")
    flagged = parse_options(["--data-url", "http://d/w.csv", "--no-plain-http"], env)
    assert flagged.data_urls == ("http://d/w.csv",)
    assert flagged.plain_http is False


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"KAITO_TUNING_METRICS_PORT": "http"}, "--metrics-port must be an integer"),
        ({"KAITO_TUNING_METRICS_PORT": "70000"}, "at most 65535"),
        ({"KAITO_TUNING_METHOD": "dora"}, "method must be lora or qlora"),
        ({"KAITO_TUNING_PLAIN_HTTP": "maybe"}, "true or false"),
        ({"KAITO_TUNING_MAX_DOWNLOAD_BYTES": "0"}, "at least 1"),
    ],
)
def test_bad_option_values_are_config_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_options([], env)


def test_help_documents_data_qlora_fallback_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--help"], {})
    text = capsys.readouterr().out
    assert "QuantizationConfig.fallback_to_lora" in text
    assert "KAITO_TUNING_" in text
    assert "exit codes: 0 done, 2 options or config, 3 data" in text


def run_main(args: list[str], caplog: pytest.LogCaptureFixture, env: dict[str, str]) -> int:
    with caplog.at_level(logging.ERROR, logger="kaito"):
        return main(args, env)


@pytest.fixture
def good_data(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "data" / "train.jsonl", chat_rows(4), "jsonl").parent


@pytest.fixture
def env(model_cache: Path) -> dict[str, str]:
    return {"KAITO_CACHE_DIR": str(model_cache)}


def test_missing_data_or_output_or_model_are_option_errors(
    tmp_path: Path, good_data: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    out = ["--output-dir", str(tmp_path / "out")]
    assert run_main(["--preset", TINY_PRESET, *out], caplog, env) == 2
    assert "no training data: pass --data-dir, --data-url or --data-image" in caplog.text
    assert run_main(["--preset", TINY_PRESET, "--data-dir", str(good_data)], caplog, env) == 2
    assert "no output directory" in caplog.text
    assert run_main(["--data-dir", str(good_data), *out], caplog, env) == 2
    assert "no model given" in caplog.text
    assert (
        run_main(["--preset", "tiny-phi-3-randon", "--data-dir", str(good_data), *out], caplog, env)
        == 2
    )
    assert "unknown preset 'tiny-phi-3-randon'; did you mean 'tiny-phi-3-random'" in caplog.text


def test_a_bad_config_exits_2_naming_the_key(
    tmp_path: Path, good_data: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("training_config:\n  TrainingArguments:\n    num_train_epochs: lots\n")
    args = ["--preset", TINY_PRESET, "--config", str(config), "--data-dir", str(good_data)]
    assert run_main([*args, "--output-dir", str(tmp_path / "o")], caplog, env) == 2
    assert "TrainingArguments.num_train_epochs: Input should be a valid number" in caplog.text


@pytest.mark.parametrize(
    ("write", "fragment"),
    [
        (lambda d: (d / "t.jsonl").write_text(""), "the data is empty"),
        (lambda d: (d / "t.parquet").write_bytes(b"PAR1garbage"), "not a readable parquet file"),
        (
            lambda d: write_rows(d / "t.csv", [{"question": "a", "answer": "b"}], "csv"),
            "has the columns ['question', 'answer']",
        ),
        (lambda d: (d / "notes.md").write_text("x"), "no data files in"),
    ],
)
def test_bad_data_exits_3_saying_what_is_wrong(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    env: dict[str, str],
    write: Any,
    fragment: str,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write(data)
    args = ["--preset", TINY_PRESET, "--data-dir", str(data), "--output-dir", str(tmp_path / "o")]
    assert run_main(args, caplog, env) == 3
    assert fragment in caplog.text


def test_no_row_fitting_the_context_exits_3(
    tmp_path: Path, good_data: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("DatasetConfig:\n  max_seq_length: 4\n")
    args = ["--preset", TINY_PRESET, "--config", str(config), "--data-dir", str(good_data)]
    assert run_main([*args, "--output-dir", str(tmp_path / "o")], caplog, env) == 3
    assert "no row fits the context: all 4 rows are longer than 4 tokens" in caplog.text


def test_an_unreachable_data_url_exits_3(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/train.parquet"
    args = ["--preset", TINY_PRESET, "--data-url", url, "--output-dir", str(tmp_path / "o")]
    env |= {"KAITO_TUNING_DATA_DIR": str(tmp_path / "d"), "KAITO_TUNING_DOWNLOAD_ATTEMPTS": "2"}
    assert run_main(args, caplog, env) == 3
    assert f"cannot download {url}" in caplog.text
    assert "gave up after 2 attempts" in caplog.text


def test_a_data_image_is_pulled_into_the_data_directory(
    tmp_path: Path, tuning_registry: Any, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    auth = (REGISTRY_USER, REGISTRY_PASSWORD)
    reference = push_image(
        tuning_registry, "data/qa", "v1", [{"data/qa.jsonl": b'{"q": "a"}\n'}], auth=auth
    )
    secret = tuning_registry.docker_config(tmp_path / "pull.json", *auth)
    other = tmp_path / "other.json"  # a second pull secret, for another registry
    other.write_text('{"auths": {"elsewhere.example": {"username": "x", "password": "y"}}}')
    args = ["--preset", TINY_PRESET, "--data-image", reference, "--output-dir", str(tmp_path / "o")]
    data = tmp_path / "data"
    secrets = ["--data-pull-secret", str(other), "--data-pull-secret", str(secret)]
    assert run_main([*args, "--data-dir", str(data), *secrets], caplog, env) == 3
    assert (data / "qa.jsonl").is_file()
    assert "qa.jsonl has the columns ['q']" in caplog.text
    assert run_main([*args, "--data-dir", str(tmp_path / "d2")], caplog, env) == 3
    assert f"cannot pull the data image {reference}" in caplog.text
    assert "requires credentials" in caplog.text


def test_a_wrong_push_secret_fails_before_training_with_an_authentication_message(
    tmp_path: Path, good_data: Path, tuning_registry: Any
) -> None:
    secret = tuning_registry.docker_config(tmp_path / "push.json", REGISTRY_USER, "wrong")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaito.tuning",
            "--preset",
            TINY_PRESET,
            "--data-dir",
            str(good_data),
            "--output-dir",
            str(tmp_path / "out"),
            "--push",
            f"{tuning_registry.host}/adapters/x:v1",
            "--push-secret",
            str(secret),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert "authentication failed" in done.stderr
    assert f"rejected the credentials of user '{REGISTRY_USER}'" in done.stderr
    assert "loaded" not in done.stderr  # no model was loaded
    assert not (tmp_path / "out").exists()


def test_a_push_secret_without_the_registry_is_an_option_error(
    tmp_path: Path, good_data: Path, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    secret = tmp_path / "push.json"
    secret.write_text('{"auths": {"elsewhere.io": {"auth": "eDp5"}}}')
    args = ["--preset", TINY_PRESET, "--data-dir", str(good_data), "--output-dir", str(tmp_path)]
    push = ["--push", "myreg.io/a/b:v1", "--push-secret", str(secret)]
    assert run_main([*args, *push], caplog, env) == 2
    assert "no credentials for the registry myreg.io" in caplog.text
