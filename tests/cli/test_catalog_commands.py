"""The cluster-free commands: validate, plan, presets, skus, manifests.

Each runs through `kaito.cli.main` as a user would call it, and checks the exit code and what is
printed; file problems must give one line on standard error, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kaito.cli import main

SEED = Path(__file__).parent.parent / "data" / "seed"
PHI3 = SEED / "phi-3-inference.yaml"
TUNING = SEED / "phi-3-tuning.yaml"
ADAPTERS = SEED / "phi-3-adapters.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_accepts_the_seed_workspaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "validate", "-f", str(PHI3), "-f", str(TUNING), "-f", str(ADAPTERS)
    )
    assert code == 0, out + err
    assert out == ""
    assert err.count(": valid") == 3


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d["inference"]["preset"].update(name="phi-9"), "inference.preset.name"),
        (lambda d: d["resource"].update(instanceType="Standard_Nope"), "resource.instanceType"),
        (lambda d: d["metadata"].update(name="Not_A_Name"), "metadata.name"),
        (lambda d: d.update(tuning={"method": "lora"}), "tuning"),
        (lambda d: d["inference"]["preset"].update(nmae="x"), "inference.preset.nmae"),
    ],
)
def test_validate_rejects_with_the_field_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: object, path: str
) -> None:
    doc = yaml.safe_load(PHI3.read_text())
    edit(doc)  # type: ignore[operator]
    code, out, err = run(capsys, "validate", "-f", write(tmp_path, "ws.yaml", yaml.safe_dump(doc)))
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith(f"{path}: ") for line in lines), out
    assert all(": " in line for line in lines)
    assert "invalid" in err


def test_validate_update_rejects_an_immutable_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = yaml.safe_load(PHI3.read_text())
    doc["resource"]["instanceType"] = "Standard_NC12s_v3"
    new = write(tmp_path, "new.yaml", yaml.safe_dump(doc))
    code, out, _ = run(capsys, "validate", "-f", new, "--old", str(PHI3))
    assert code == 1
    assert out.startswith("resource.instanceType: ")
    assert run(capsys, "validate", "-f", new)[0] == 0  # the same file is fine as a create


def test_a_file_for_kaito_up_validates_its_workspace(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tuning = str(SEED.parents[2] / "examples" / "tiny-tuning-local.yaml")  # with a ConfigMap
    code, out, err = run(capsys, "validate", "--byo", "-f", tuning)
    assert (code, out, err) == (0, "", f"{tuning}: valid\n")
    doubled = write(tmp_path, "two.yaml", PHI3.read_text() + "---\n" + PHI3.read_text())
    code, _, err = run(capsys, "validate", "-f", doubled)
    assert code == 2
    assert "2 YAML documents; give one workspace per file" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2\n", "malformed YAML"),
        ("a: 1\n---\nb: 2\n", "2 YAML documents"),
        ("", "no YAML document"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_bad_files_give_one_line_and_no_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    for command in ("validate", "plan"):
        code, _out, err = run(capsys, command, "-f", write(tmp_path, "bad.yaml", text))
        assert code == 2
        assert message in err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_missing_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "plan", "-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: no such file" in err


def test_plan_of_the_seed_is_one_nc6s_v3_node(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "-f", str(PHI3), "-o", "json")
    assert code == 0
    plan = json.loads(out)
    assert plan["sku"] == "Standard_NC6s_v3"
    assert plan["node_count"] == 1
    code, out, _ = run(capsys, "plan", "-f", str(PHI3))
    assert code == 0
    assert "Standard_NC6s_v3" in out
    assert any(line.split() == ["nodes:", "1"] for line in out.splitlines())


def test_plan_without_instance_type_ranks_the_skus(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--preset", "llama-3.3-70b-instruct", "-o", "json")
    assert code == 0
    ranked = json.loads(out)
    assert ranked, "some SKU fits a 70B model"
    nodes = {p["sku"]: p["node_count"] for p in ranked}
    assert ranked[0]["node_count"] == 1, "the best fit needs a single node"
    assert nodes.get("Standard_NC6s_v3", 99) > 1, "16 GB GPUs cannot hold 70B on one node"


def test_plan_that_does_not_fit_shows_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--preset", "phi-4", "--instance-type", "Standard_NC6s_v3")
    assert code == 1
    assert "does not support distributed inference" in err
    assert "31.94 GiB" in err
    assert "13.44 GiB usable" in err


def test_unknown_preset_suggests_close_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "presets", "show", "phi-3-mini-4k-instruc")
    assert code == 2
    assert "phi-3-mini-4k-instruct" in err


def test_presets_and_skus_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "presets", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["NAME", "FAMILY"]
    assert any(line.startswith("phi-3-mini-4k-instruct ") for line in out.splitlines())
    code, out, _ = run(capsys, "presets", "show", "phi-4", "-o", "json")
    assert json.loads(out)["name"] == "phi-4"
    code, out, _ = run(capsys, "skus", "list", "--cloud", "aws", "-o", "json")
    names = {s["name"] for s in json.loads(out)}
    assert "p4d.24xlarge" in names
    assert "Standard_NC6s_v3" not in names


def test_manifests_crd_prints_the_workspace_crd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "manifests", "crd")
    assert code == 0
    crd = yaml.safe_load(out)
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "workspaces.kaito.sh"
