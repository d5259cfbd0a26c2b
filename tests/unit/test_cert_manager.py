"""overlays/cert-manager and the harness's cert-manager install, checked without a cluster.

The overlay must hand the adapter's TLS to cert-manager completely (a Certificate for the Secret the
Deployment mounts, a CA chain, every APIService annotated for cainjector, no placeholder or static
caBundle left), and render() must add no certificate of its own. The harness's cert-manager objects
must bind each component to exactly its role and run images the kit can build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness import certmanager, images, manifests
from harness.manifests import ManifestError
from tests.unit.test_manifests import _unknown_fields

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")

OVERLAY = "cert-manager"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return manifests.build(OVERLAY)


def _by(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_overlay_is_listed() -> None:
    assert OVERLAY in manifests.OVERLAYS


def test_every_apiservice_takes_its_ca_from_the_serving_certificate(objects: list[dict[str, Any]]) -> None:
    apiservices = _by(objects, "APIService")
    certificates = _by(objects, "Certificate")
    assert set(apiservices) == {
        "v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"
    }  # fmt: skip
    secret = manifests._expected_secret(objects)
    for name, obj in apiservices.items():
        assert "caBundle" not in obj["spec"], name  # no placeholder, no stale static CA
        assert not obj["spec"].get("insecureSkipTLSVerify"), name
        ref = obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        namespace, _, cert_name = ref.partition("/")
        cert = certificates[cert_name]
        # The Certificate cainjector reads is the one whose Secret the adapter serves with.
        assert (namespace, cert["spec"]["secretName"]) == secret == (cert["metadata"]["namespace"],
                                                                      manifests.SERVING_SECRET)
    assert manifests.placeholder_apiservices(objects) == []


def test_serving_certificate_is_signed_by_a_namespaced_ca_chain(objects: list[dict[str, Any]]) -> None:
    certificates, issuers = _by(objects, "Certificate"), _by(objects, "Issuer")
    assert not _by(objects, "ClusterIssuer")
    serving = next(c for c in certificates.values() if c["spec"]["secretName"] == manifests.SERVING_SECRET)
    service = _by(objects, "Service")[manifests.ADAPTER_SERVICE]
    ns = service["metadata"]["namespace"]
    wanted = f"{manifests.ADAPTER_SERVICE}.{ns}.svc"
    assert wanted in serving["spec"]["dnsNames"]  # what the aggregator dials and verifies
    assert "server auth" in serving["spec"]["usages"]
    ca_issuer = issuers[serving["spec"]["issuerRef"]["name"]]
    assert serving["spec"]["issuerRef"]["kind"] == "Issuer"
    ca_secret = ca_issuer["spec"]["ca"]["secretName"]
    ca_cert = next(c for c in certificates.values() if c["spec"]["secretName"] == ca_secret)
    assert ca_cert["spec"]["isCA"] is True
    root = issuers[ca_cert["spec"]["issuerRef"]["name"]]
    assert root["spec"] == {"selfSigned": {}}
    for obj in [*certificates.values(), *issuers.values()]:
        assert obj["metadata"]["namespace"] == ns


def test_overlay_has_no_insecure_settings(objects: list[dict[str, Any]]) -> None:
    assert [f for f in manifests.audit(objects) if f.severity == "critical"] == []


def test_render_adds_no_certificate_and_refuses_a_serving_secret(tmp_path: Path) -> None:
    out = manifests.render(OVERLAY, ca_bundle="", serving_secret_yaml=None, out_dir=tmp_path / "build")
    rendered = manifests.load_objects(manifests.kustomize(out))
    assert not [o for o in rendered if o["kind"] == "Secret"]
    assert all("caBundle" not in o["spec"] for o in rendered if o["kind"] == "APIService")
    secret = tmp_path / "secret.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError, match="cert-manager issue the adapter's Secret"):
        manifests.render(OVERLAY, ca_bundle="", serving_secret_yaml=secret, out_dir=tmp_path / "b2")


def test_other_overlays_issue_nothing_through_cert_manager() -> None:
    assert manifests.cert_manager_secrets(manifests.build("default")) == []


def test_harness_cert_manager_binds_each_component_to_its_own_role() -> None:
    objs = certmanager.objects()
    deployments = _by(objs, "Deployment")
    roles, bindings = _by(objs, "ClusterRole"), _by(objs, "ClusterRoleBinding")
    assert set(deployments) == {certmanager.CONTROLLER, certmanager.CAINJECTOR}
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        binding = bindings[f"hpa-kit:{name}"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": pod["serviceAccountName"],
                                        "namespace": certmanager.NAMESPACE}]  # fmt: skip
        assert binding["roleRef"]["name"] in roles
        assert pod["securityContext"]["runAsNonRoot"] is True
    for obj in objs:
        assert obj["metadata"]["labels"][certmanager.LABEL[0]] == certmanager.LABEL[1]
    # cainjector only reads secrets; nothing gets wildcard verbs or resources.
    inject = roles[f"hpa-kit:{certmanager.CAINJECTOR}"]["rules"]
    assert {v for r in inject if "secrets" in r["resources"] for v in r["verbs"]} == {"get", "list", "watch"}
    for role in roles.values():
        assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])


def test_harness_cert_manager_images_are_buildable() -> None:
    names = [c["image"] for d in _by(certmanager.objects(), "Deployment").values()
             for c in d["spec"]["template"]["spec"]["containers"]]  # fmt: skip
    assert sorted(names) == sorted(certmanager.images().values())
    assert images.unbuildable(names) == []


def test_crds_with_template_markers_are_refused(tmp_path: Path) -> None:
    (tmp_path / "cert-manager.io_certificates.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: certificates.cert-manager.io, labels: {{ include \"labels\" . }}}\n"
    )
    with pytest.raises(certmanager.CertManagerError, match="Helm template"):
        certmanager.crd_objects(tmp_path)


def test_crds_are_labelled_for_uninstall(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: issuers.cert-manager.io}\nspec: {group: cert-manager.io}\n"
    )
    (crd,) = certmanager.crd_objects(tmp_path)
    assert crd["metadata"]["labels"] == {certmanager.LABEL[0]: certmanager.LABEL[1]}
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(certmanager.CertManagerError, match="expected cert-manager CRDs"):
        certmanager.crd_objects(tmp_path)


def _module_crds() -> Path | None:
    """The pinned cert-manager module's deploy/crds in the Go module cache, if there. Never downloads."""
    caches = [os.environ.get("GOMODCACHE", ""), str(Path.home() / "go" / "pkg" / "mod")]
    if go := shutil.which("go"):
        proc = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False)
        caches.insert(0, proc.stdout.strip())
    for cache in filter(None, caches):
        path = Path(cache) / f"github.com/cert-manager/cert-manager@{certmanager.version()}/deploy/crds"
        if path.is_dir():
            return path
    return None


def test_overlay_objects_match_cert_managers_crd_schemas(objects: list[dict[str, Any]]) -> None:
    crds = _module_crds()
    if crds is None:
        pytest.skip("cert-manager's module is not in the Go module cache (scripts/build-cert-manager.sh)")
    schemas = {}
    for crd in certmanager.crd_objects(crds):
        for version in crd["spec"]["versions"]:
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = (
                version["schema"]["openAPIV3Schema"]
            )
    checked = 0
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if obj["apiVersion"].startswith("cert-manager.io/"):
            jsonschema.validate(obj["spec"], schemas[key]["properties"]["spec"])
            assert _unknown_fields(obj["spec"], schemas[key]["properties"]["spec"]) == [], key
            checked += 1
    assert checked == 4
    bad = yaml.safe_load("{isCA: yes-please}")
    cert_schema = schemas[("cert-manager.io/v1", "Certificate")]["properties"]["spec"]
    with pytest.raises(jsonschema.ValidationError):  # the schema is not silently permissive
        jsonschema.validate(bad, cert_schema)
    assert _unknown_fields({"dnsName": ["x"]}, cert_schema) == [".dnsName"]


def test_install_with_a_registry_runs_its_images_from_where_images_push_put_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`hpa-kit install --registry` on a cluster that pulls: cert-manager's Deployments name the pushed
    references too, not the node-local names only kind/local have."""
    from harness import stack

    class RecordingKubectl:
        def run(self, *args: str, **kw: Any) -> str:
            return ""

    applied: list[dict[str, Any]] = []
    monkeypatch.setattr(stack, "wait_rollout", lambda *a, **kw: None)
    registry = "reg.example.com:5000"
    cm = certmanager.CertManager(RecordingKubectl(), progress=lambda _: None, registry=registry)  # type: ignore[arg-type]
    cm._crds = [{"metadata": {"name": "certificates.cert-manager.io"}}]
    monkeypatch.setattr(cm, "_apply", applied.extend)
    cm.install(timeout=5)
    run = {c["image"] for o in applied if o.get("kind") == "Deployment"
           for c in o["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    pushed = {images.registry_ref(s.name, registry) for s in images.default_specs()
              if s.alias.startswith("cert-manager-")}  # fmt: skip
    assert run == pushed and len(run) == 2, (run, pushed)
