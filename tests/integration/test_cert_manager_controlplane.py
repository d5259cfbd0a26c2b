"""The kit's cert-manager build against a real kube-apiserver (the ``control_plane`` fixture, no node).

scripts/build-cert-manager.sh's controller and cainjector run as processes; the CRDs come from the
pinned module; the objects are overlays/cert-manager's own Issuers, Certificates and APIServices.
Checks what the overlay relies on: both Certificates Ready, the serving Secret signed by the CA
Secret, and every APIService's caBundle filled with exactly that CA. Seconds once built; the first
run builds the binaries (minutes; HPA_KIT_BUILD=0 skips instead).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from harness import certmanager, manifests, procs
from harness.kubectl import Kubectl
from harness.waits import wait_for

pytestmark = pytest.mark.integration

NS = manifests.ADAPTER_NAMESPACE


@pytest.fixture(scope="module")
def binaries() -> Path:
    out = certmanager.binaries_dir()
    if all((out / c).is_file() for c in ("controller", "cainjector")):
        return out
    if os.environ.get("HPA_KIT_BUILD", "1") == "0":
        pytest.skip(f"cert-manager not built in {out} and HPA_KIT_BUILD=0: run scripts/build-cert-manager.sh")
    return certmanager.build()


def test_issues_the_overlay_chain_and_injects_the_ca(
    control_plane: Any, binaries: Path, tmp_path: Path
) -> None:
    kubectl = Kubectl(control_plane.kubeconfig)
    crds = certmanager.crd_objects()
    kubectl.apply(crds, timeout=120)
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                *(f"crd/{c['metadata']['name']}" for c in crds), timeout=90)  # fmt: skip
    wanted = ("Namespace", "Issuer", "Certificate", "APIService")
    objects = [o for o in manifests.build("cert-manager") if o["kind"] in wanted
               and o["metadata"].get("namespace", NS) == NS]  # fmt: skip
    assert sum(o["kind"] == "Certificate" for o in objects) == 2
    kubectl.apply(objects, timeout=60)

    # The harness's RBAC, and each component acting as its ServiceAccount (kubeconfig `as:`), so a
    # missing permission fails here as it would in the pod.
    rbac = [o for o in certmanager.objects() if o["kind"] != "Deployment"]
    kubectl.apply(rbac, timeout=60)
    pid_dir = tmp_path / "pids"
    records = []
    for part, args in (("controller", []), ("cainjector", ["--kinds=apiservice"])):
        config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
        for user in config["users"]:
            user["user"]["as"] = f"system:serviceaccount:{certmanager.NAMESPACE}:cert-manager-{part}"
        kubeconfig = tmp_path / f"{part}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        env = {"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": certmanager.NAMESPACE}
        if part == "controller":  # cert-manager's client config reads the flag, not $KUBECONFIG
            args = ["--kubeconfig", str(kubeconfig)]
        records.append(procs.start(f"cert-manager-{part}", [str(binaries / part), *args, "-v=2"],
                                   log=tmp_path / f"{part}.log", pid_dir=pid_dir, env=env))  # fmt: skip
    try:
        certificates = [o["metadata"]["name"] for o in objects if o["kind"] == "Certificate"]
        apiservices = [o["metadata"]["name"] for o in objects if o["kind"] == "APIService"]

        def ready() -> tuple[bool, str]:
            states = {}
            for name in certificates:
                status = kubectl.json("-n", NS, "get", "certificate", name).get("status") or {}
                states[name] = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
            return all(s == "True" for s in states.values()), str(states)

        def injected() -> tuple[bool, str]:
            bundles = {n: kubectl.json("get", "apiservice", n)["spec"].get("caBundle") for n in apiservices}
            return all(bundles.values()), f"{sum(map(bool, bundles.values()))}/{len(bundles)} injected"

        wait_for("Certificates Ready", ready, timeout=120, interval=1,
                 hint=f"logs in {tmp_path}/controller.log", progress=print)  # fmt: skip
        wait_for("caBundle injected", injected, timeout=60, interval=1,
                 hint=f"logs in {tmp_path}/cainjector.log", progress=print)  # fmt: skip

        def secret(name: str, key: str) -> bytes:
            return base64.b64decode(kubectl.json("-n", NS, "get", "secret", name)["data"][key])

        ca = x509.load_pem_x509_certificate(secret("hpa-kit-adapter-ca", "tls.crt"))
        serving = x509.load_pem_x509_certificate(secret(manifests.SERVING_SECRET, "tls.crt"))
        assert serving.issuer == ca.subject and ca.subject != serving.subject
        serving.verify_directly_issued_by(ca)
        assert x509.load_pem_x509_certificates(secret(manifests.SERVING_SECRET, "ca.crt")) == [ca]
        for name in apiservices:
            bundle = base64.b64decode(kubectl.json("get", "apiservice", name)["spec"]["caBundle"])
            assert x509.load_pem_x509_certificates(bundle) == [ca], name
    finally:
        for record in records:
            procs.stop(record)
        kubectl.run("delete", "apiservice", "-l", "hpa-kit/ca-bundle=cert-manager", "--ignore-not-found",
                    check=False)  # fmt: skip
        for part in ("controller", "cainjector"):
            log = (tmp_path / f"{part}.log").read_text().splitlines()
            forbidden = [line for line in log if "forbidden" in line]
            assert not forbidden, f"{part} lacks RBAC: {forbidden[:3]}"
