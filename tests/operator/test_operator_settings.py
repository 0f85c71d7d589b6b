"""Settings: flags, `KAITO_*` variables, their precedence, validation, and documentation."""

from __future__ import annotations

import pytest

import kaito.operator
from kaito.cli._main import build_parser, main
from kaito.operator import OPTIONS, OperatorSettings, SettingsError, parse_pairs, settings_from


def test_every_option_has_a_flag_and_a_variable_named_after_it() -> None:
    fields = {f for f in OperatorSettings.__attrs_attrs__}  # type: ignore[attr-defined]
    names = {a.name for a in fields}
    for option in OPTIONS:
        assert option.field in names
        assert option.env == "KAITO_" + option.flag[2:].upper().replace("-", "_")
    assert {o.flag for o in OPTIONS} >= {
        "--kubeconfig",
        "--context",
        "--provisioner",
        "--provisioner-option",
        "--runtime",
        "--concurrency",
        "--leader-election",
        "--lease-name",
        "--lease-namespace",
        "--metrics-addr",
        "--health-addr",
        "--log-format",
        "--disable-node-auto-provisioning",
    }


def test_every_option_is_documented_in_the_package_docstring() -> None:
    doc = kaito.operator.__doc__ or ""
    for option in OPTIONS:
        assert option.flag in doc, option.flag
        assert option.env in doc, option.env


def test_every_option_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option.flag in text, option.flag
        assert f"[{option.env}]" in text, option.env
    assert "--no-leader-election" in text


def test_defaults() -> None:
    s = settings_from({}, {})
    assert s == OperatorSettings()
    assert (s.provisioner, s.runtime, s.concurrency, s.leader_election) == (
        "karpenter",
        "hf",
        4,
        True,
    )
    assert (s.metrics_addr, s.health_addr, s.log_format) == ("0.0.0.0:8080", "0.0.0.0:8081", "text")


def test_variables_fill_in_and_flags_win() -> None:
    env = {
        "KAITO_PROVISIONER": "fake",
        "KAITO_CONCURRENCY": "7",
        "KAITO_LEADER_ELECTION": "false",
        "KAITO_PROVISIONER_OPTION": "cpu=4, memory=32Gi",
        "KAITO_DISABLE_NODE_AUTO_PROVISIONING": "yes",
        "KAITO_BACKOFF_BASE": "0.25",
        "KAITO_LOG_FORMAT": "json",
        "UNRELATED": "x",
    }
    s = settings_from({"concurrency": 2, "provisioner": None}, env)
    assert s.provisioner == "fake"
    assert s.concurrency == 2, "the flag wins"
    assert s.leader_election is False
    assert s.provisioner_options == {"cpu": "4", "memory": "32Gi"}
    assert s.disable_node_auto_provisioning is True
    assert s.backoff_base == 0.25
    assert s.log_format == "json"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAITO_CONCURRENCY": "many"}, "KAITO_CONCURRENCY='many': expected a int"),
        ({"KAITO_LEADER_ELECTION": "maybe"}, "expected true or false"),
        ({"KAITO_LOG_FORMAT": "xml"}, "expected one of text, json"),
        ({"KAITO_PROVISIONER_OPTION": "novalue"}, "'novalue' is not KEY=VALUE"),
        ({"KAITO_CONCURRENCY": "0"}, "concurrency must be at least 1"),
        ({"KAITO_RENEW_DEADLINE": "20"}, "lease duration > renew deadline"),
        ({"KAITO_BACKOFF_CAP": "0.1"}, "backoff cap"),
    ],
)
def test_bad_values_name_the_variable_or_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from({}, env)


def test_pairs() -> None:
    assert parse_pairs(["a=1", "b = x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(SettingsError, match="--provisioner-option: '=1' is not KEY=VALUE"):
        parse_pairs(["=1"])


def test_the_cli_reports_bad_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAITO_CONCURRENCY", "lots")
    assert main(["operator", "run"]) == 2
    assert "KAITO_CONCURRENCY='lots'" in capsys.readouterr().err
    monkeypatch.delenv("KAITO_CONCURRENCY")
    assert main(["operator", "run", "--provisioner-option", "oops"]) == 2
    assert "'oops' is not KEY=VALUE" in capsys.readouterr().err


def test_an_unknown_provisioner_is_the_registrys_error(
    capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    code = main(["operator", "run", "--provisioner", "karpentr", "--kubeconfig", "/nonexistent"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no provisioner named 'karpentr' is installed" in err
    assert "did you mean 'karpenter'?" in err


def test_a_missing_kubeconfig_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaito import plugins
    from kaito.provisioners.fake import FakeProvisioner

    registry = plugins.Registry()
    registry.add_provisioner("fake", FakeProvisioner)
    monkeypatch.setattr("kaito.cli._main.default_registry", lambda: registry)
    code = main(["operator", "run", "--provisioner", "fake", "--kubeconfig", "/nonexistent/kc"])
    assert code == 2
    assert "cannot connect to the cluster: kubeconfig not found: /nonexistent/kc" in (
        capsys.readouterr().err
    )
