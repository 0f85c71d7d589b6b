"""The Helm chart in charts/kaito renders the same objects as `operator_manifests`.

Helm is not installable here, so the templates are rendered by `gotemplate`, a small renderer
of the Go-template subset the chart uses (it rejects anything outside it). The first tests pin
that renderer to Go's semantics on the constructs the chart relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from gotemplate import Renderer, TemplateError, render_chart

from kaito import __version__
from kaito.api import workspace_crd
from kaito.operator import operator_manifests

CHART = Path(__file__).resolve().parents[2] / "charts" / "kaito"


def render(source: str, data: Any = None) -> str:
    renderer = Renderer()
    return renderer.render(renderer.parse(source), data)


def key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def same_objects(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    assert sorted(map(key, left)) == sorted(map(key, right))
    mine = {key(o): o for o in right}
    for obj in left:
        assert obj == mine[key(obj)], key(obj)


# -- the renderer ------------------------------------------------------------------------------


def test_trim_markers_remove_all_adjacent_whitespace() -> None:
    assert render("a  \n {{- 1 -}} \n  b") == "a1b"
    assert render("a {{ 1 }} b") == "a 1 b"
    assert render('x:\n  {{- "y" | nindent 2 }}') == "x:\n  y"


def test_values_print_as_go_prints_them() -> None:
    data = {"Values": {"on": True, "n": 4, "missing": None}}
    assert render("{{ .Values.on }} {{ .Values.n }} [{{ .Values.missing }}]", data) == "true 4 []"
    assert render("{{ .Values.on | quote }} {{ .Values.n | quote }}", data) == '"true" "4"'
    assert render('{{ .Values.nothing | default "d" }}', data) == "d"


def test_conditions_ranges_variables_and_includes() -> None:
    source = (
        '{{- define "pairs" -}}{{- $first := true -}}'
        "{{- range $k, $v := . -}}{{- if not $first }},{{ end -}}"
        '{{- printf "%s=%v" $k $v -}}{{- $first = false -}}{{- end -}}{{- end }}'
        '{{ include "pairs" .m }}|{{ if eq .s "a" }}A{{ else if eq .s "b" }}B{{ else }}C{{ end }}'
    )
    assert render(source, {"m": {"z": 1, "a": "x"}, "s": "b"}) == "a=x,z=1|B"
    assert render(source, {"m": {}, "s": "q"}) == "|C"


def test_constructs_outside_the_subset_are_rejected() -> None:
    with pytest.raises(TemplateError):
        render("{{ with .x }}{{ end }}")
    with pytest.raises(TemplateError):
        render("{{ lower .x }}", {"x": "A"})


# -- the chart ---------------------------------------------------------------------------------


def test_the_chart_version_follows_kaito() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "kaito"
    assert chart["appVersion"] == __version__


def test_the_chart_ships_the_workspace_crd_unchanged() -> None:
    crds = [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]
    assert crds == [workspace_crd()], (
        "regenerate with: kaito manifests crd > charts/kaito/crds/kaito.sh_workspaces.yaml"
    )


def test_default_values_render_the_default_manifests() -> None:
    same_objects(
        render_chart(CHART, namespace="kaito-system"),
        operator_manifests(
            f"kaito:{__version__}", "kaito-system", include_crds=False, include_namespace=False
        ),
    )


def test_values_render_the_same_objects_as_the_same_arguments() -> None:
    values = {
        "image": {"repository": "example/kaito", "tag": "9.9"},
        "createNamespace": True,
        "replicas": 3,
        "provisioner": "fake",
        "provisionerOptions": {"memory": "32Gi", "cpu": 4},
        "runtime": "vllm",
        "disableNodeAutoProvisioning": True,
        "concurrency": 8,
        "leaderElection": {"leaseName": "kaito-lease"},
        "logFormat": "text",
        # Helm merges maps into the chart's values: the default limits stay.
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
    }
    same_objects(
        render_chart(CHART, values, namespace="ops"),
        operator_manifests(
            "example/kaito:9.9",
            "ops",
            replicas=3,
            provisioner="fake",
            provisioner_options={"memory": "32Gi", "cpu": "4"},
            runtime="vllm",
            disable_node_auto_provisioning=True,
            concurrency=8,
            lease_name="kaito-lease",
            log_format="text",
            resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
            include_crds=False,
        ),
    )


@pytest.mark.parametrize("provisioner", ["karpenter", "byo", "fake", "third-party"])
def test_every_provisioner_gets_the_same_rules(provisioner: str) -> None:
    same_objects(
        render_chart(CHART, {"provisioner": provisioner}, namespace="kaito-system"),
        operator_manifests(
            f"kaito:{__version__}",
            "kaito-system",
            provisioner=provisioner,
            include_crds=False,
            include_namespace=False,
        ),
    )


def test_without_leader_election_there_is_no_lease_role() -> None:
    rendered = render_chart(CHART, {"leaderElection": {"enabled": False}}, namespace="x")
    assert {o["kind"] for o in rendered} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    }
    same_objects(
        rendered,
        operator_manifests(
            f"kaito:{__version__}",
            "x",
            leader_election=False,
            include_crds=False,
            include_namespace=False,
        ),
    )
