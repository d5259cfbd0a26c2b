"""overlays/cert-manager on a real cluster: cert-manager (built from its Go module, CRDs from the
module) issues the adapter's TLS and cainjector fills the APIServices' caBundle.

Installs the harness's cert-manager and the stack with that overlay, then checks what the aggregator
depends on against independent sources: every Certificate Ready; each APIService Available with a
caBundle equal to the CA certificate cert-manager issued (read from the CA's Secret) that really
signed the adapter's serving certificate; an External metric read through the aggregator equal to
what Prometheus says. Then uninstalls and checks that nothing of cert-manager is left.

Disruptive: the metrics API groups can have one owner, so a session stack installed by earlier tests
is uninstalled first and installed again at the end.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from harness import certmanager, hpa, manifests
from harness.kubectl import Kubectl
from harness.pytest_plugin import setting
from harness.stack import ADAPTER_NS, APISERVICES, DEMO_NS, RATE_WINDOW, Stack
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive, pytest.mark.timeout(2400)]

CA_SECRET = "hpa-kit-adapter-ca"
SERVING_SECRET = "custom-metrics-apiserver-tls"
DEPTH = f'sum(queue_depth{{namespace="{DEMO_NS}",service="queue"}})'
HITS = f'sum(rate(total_hit_count{{namespace="{DEMO_NS}",service="hits"}}[{RATE_WINDOW}]))'


def _secret_pem(kubectl: Kubectl, name: str, key: str) -> bytes:
    data = kubectl.json("-n", ADAPTER_NS, "get", "secret", name)["data"]
    return base64.b64decode(data[key])


def _session_stack(
    pytestconfig: pytest.Config, cluster: Any, report_root: Any, progress: Any
) -> Stack | None:
    """The session's stack when one is installed on the cluster (earlier tests used ``stack``)."""
    found = cluster.kubectl().run("get", "apiservice", APISERVICES[0], "--ignore-not-found", "-o", "name")
    if not found.strip():
        return None
    return Stack(kubeconfig=cluster.kubeconfig, work_dir=report_root / "stack", cluster=cluster,
                 overlay=str(setting(pytestconfig, "hpa_kit_overlay")), progress=progress)  # fmt: skip


def test_cert_manager_overlay_serves_metrics_with_injected_ca(
    pytestconfig: pytest.Config, cluster: Any, kubectl: Kubectl, report_root: Any, progress_for: Any
) -> None:
    if cluster.provider == "kind" and os.environ.get("HPA_KIT_CERT_MANAGER_ON_KIND") != "1":
        pytest.skip("cert-manager overlay on kind: CI proves it on the local provider in the same run; "
                    "it takes ~6 min more on kind (it passed there when built); "
                    "HPA_KIT_CERT_MANAGER_ON_KIND=1 runs it")
    progress = progress_for("")
    session = _session_stack(pytestconfig, cluster, report_root, progress)
    if session is not None:
        session.uninstall()
    st = Stack(kubeconfig=cluster.kubeconfig, work_dir=report_root / "cert-manager", overlay="cert-manager",
               cluster=cluster, progress=progress)  # fmt: skip
    try:
        t0 = time.monotonic()
        try:
            st.install(timeout=600)
        except Exception:
            st.diagnostics(report_root / "cert-manager" / "diagnostics",
                           namespaces=(ADAPTER_NS, certmanager.NAMESPACE, DEMO_NS))  # fmt: skip
            raise
        install_s = time.monotonic() - t0
        _check_stack(st, kubectl)
        assert certmanager.leftovers(kubectl), "leftovers() must see the installed cert-manager"
        t1 = time.monotonic()
        st.uninstall()
        uninstall_s = time.monotonic() - t1
        assert certmanager.leftovers(kubectl) == []
        names = kubectl.run("get", "namespace", "-o", "name").split()
        assert f"namespace/{ADAPTER_NS}" not in names
        progress(f"cert-manager overlay: install {install_s:.0f}s, uninstall {uninstall_s:.0f}s")
    finally:
        if certmanager.leftovers(kubectl):
            st.uninstall()
        if session is not None:
            session.install()


def _check_stack(st: Stack, kubectl: Kubectl) -> None:
    # Every Certificate Ready (Stack.install waited for it; read it again, independently).
    names = st.certificates()
    assert sorted(names) == sorted([CA_SECRET, "custom-metrics-apiserver"])
    for name in names:
        cert = kubectl.json("-n", ADAPTER_NS, "get", "certificate", name)
        ready = {c["type"]: c for c in cert["status"]["conditions"]}["Ready"]
        assert ready["status"] == "True", f"{name}: {ready}"

    # The CA cert-manager issued (its own Secret) really signed the adapter's serving certificate.
    ca_pem = _secret_pem(kubectl, CA_SECRET, "tls.crt")
    ca = x509.load_pem_x509_certificate(ca_pem)
    serving = x509.load_pem_x509_certificate(_secret_pem(kubectl, SERVING_SECRET, "tls.crt"))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert serving.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    algorithm = ec.ECDSA(serving.signature_hash_algorithm)
    ca_key.verify(serving.signature, serving.tbs_certificate_bytes, algorithm)  # raises if not signed by CA
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"custom-metrics-apiserver.{ADAPTER_NS}.svc" in sans.get_values_for_type(x509.DNSName)

    # Each APIService: Available, caBundle = that CA (cainjector's work; the repo carries none).
    for name in st.apiservices:
        obj = kubectl.json("get", "apiservice", name)
        cond = {c["type"]: c for c in obj["status"]["conditions"]}["Available"]
        assert cond["status"] == "True", f"{name}: {cond}"
        assert not obj["spec"].get("insecureSkipTLSVerify")
        bundle = x509.load_pem_x509_certificates(base64.b64decode(obj["spec"]["caBundle"]))
        assert bundle == [ca], f"{name}: caBundle is not the CA in Secret {CA_SECRET}"

    # The repo overlay itself, as `kubectl apply -k manifests/overlays/cert-manager` (server-side dry
    # run over the live install): the API server takes every object, and re-applying keeps the caBundle
    # cainjector injected (the overlay does not set the field).
    out = kubectl.run("apply", "--server-side", "--dry-run=server", "-k",
                      str(manifests.overlay_dir("cert-manager")), "-o", "json", timeout=180)  # fmt: skip
    applied = json.loads(out)
    items = applied.get("items", [applied])
    for obj in (o for o in items if o["kind"] == "APIService"):
        bundle = x509.load_pem_x509_certificates(base64.b64decode(obj["spec"]["caBundle"]))
        assert bundle == [ca], f"re-applying the overlay changed {obj['metadata']['name']}'s caBundle"
    assert sum(o["kind"] == "APIService" for o in items) == len(st.apiservices)

    # Metrics through the aggregator (TLS verified against the injected CA) equal Prometheus' values,
    # non-zero so that equality means something: the hits dial makes total_hit_count climb at a fixed
    # rate (custom.metrics.k8s.io, Object), a backlog makes queue_depth non-zero (external.metrics).
    proxy = f"/api/v1/namespaces/{DEMO_NS}/services"
    kubectl.run("create", "--raw", f"{proxy}/hits:http/proxy/scale/up", "-f", "/dev/null")
    kubectl.run("create", "--raw", f"{proxy}/queue:http/proxy/produce?n=2000", "-f", "/dev/null")
    for hpa_name, query in (("hits", HITS), ("queue", DEPTH)):
        last: list[hpa.Observation] = []

        def agrees(hpa_name: str = hpa_name, query: str = query, last: list[hpa.Observation] = last
                   ) -> tuple[bool, str]:  # fmt: skip
            obs = hpa.observe(kubectl, DEMO_NS, hpa_name, lambda: st.promql(query),
                              direct_at=lambda at: st.promql(query, at=at))  # fmt: skip
            last[:] = [obs]
            lo, hi = obs.direct_span or (obs.direct, obs.direct)
            steady = hi - lo <= 0.10 * hi  # not while rate() still ramps up after the dial starts
            ok = obs.served > 0 and steady and obs.served_matches(rel=0.10, floor=0.5)
            return ok, f"served {obs.served:g} ({obs.served_items} item(s)), Prometheus {obs.direct_span}"

        wait_for(f"HPA {hpa_name}'s metric through the aggregator = Prometheus", agrees, timeout=180,
                 interval=5)  # fmt: skip
        assert last[0].served >= 1.0, f"{hpa_name}: {last[0]}"  # the dial's rate / the backlog
