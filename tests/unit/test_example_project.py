"""examples/my-app is a project of its own: its files agree with each other and with the kit.

The example runs for real in ``make test`` (examples/my-app/run.sh); these checks catch, in a second,
the drift that would otherwise fail it after minutes: an image the kit no longer builds, an HPA
asking for a metric no rule names, a ServiceMonitor Prometheus ignores, an import of the checkout.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from harness import images, manifests

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my-app"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / "deploy" / name).read_text()) if d]


def test_the_apps_image_is_one_the_kit_builds_and_loads() -> None:
    refs = list(manifests.required_images(_docs("app.yaml")))
    assert refs and images.unbuildable(refs) == []


def test_the_hpa_asks_for_the_metric_the_projects_rule_names() -> None:
    (hpa,) = _docs("hpa.yaml")
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]}
    rules = yaml.safe_load((EXAMPLE / "deploy" / "adapter-rules.yaml").read_text())["rules"]
    assert wanted <= {r["name"]["as"] for r in rules}
    deployment = next(d for d in _docs("app.yaml") if d["kind"] == "Deployment")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_prometheus_selects_the_service_monitor() -> None:
    kit = manifests.load_objects(manifests.kustomize(manifests.overlay_dir("test")))
    prometheus = next(o for o in kit if o["kind"] == "Prometheus")
    selector = prometheus["spec"]["serviceMonitorSelector"]["matchLabels"]
    (monitor,) = [d for d in _docs("app.yaml") if d["kind"] == "ServiceMonitor"]
    assert selector.items() <= monitor["metadata"]["labels"].items()


def test_the_projects_rules_merge_with_the_kits() -> None:
    kit = manifests.load_objects(manifests.kustomize(manifests.overlay_dir("test")))
    merged = yaml.safe_load(manifests.merge_adapter_rules(kit, EXAMPLE / "deploy" / "adapter-rules.yaml"))
    assert merged["rules"][-1]["name"]["as"] == "shop_requests_per_second"


def test_the_project_uses_only_the_installed_kits_public_modules() -> None:
    for path in [*EXAMPLE.glob("tests/*.py"), EXAMPLE / "locustfile.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                assert top not in ("tests", "adapter", "mockmetrics", "bench"), f"{path}: {node.module}"
                assert not any(a.name.startswith("_") for a in node.names), f"{path}: private name"
