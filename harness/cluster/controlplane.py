"""etcd + kube-apiserver only, on loopback, no root: for tests that need the API and the aggregation
layer's identity (TokenReview, SubjectAccessReview, front-proxy client certs) but no node.

    with control_plane(tmp_dir) as cp:
        procs.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.certs import CertPair
from harness.cluster import flags
from harness.cluster.local import LocalCluster
from harness.cluster.settings import LocalSettings
from harness.progress import ProgressFn

__all__ = ["ControlPlane", "control_plane"]


@dataclass
class ControlPlane:
    """What a test needs to talk to (or impersonate the aggregator of) a bare control plane."""

    cluster: LocalCluster
    kubeconfig: Path
    server: str
    #: CA that signed the apiserver's serving cert and every client cert (``--client-ca-file``).
    ca: Path
    admin: CertPair
    #: ``--requestheader-client-ca-file``: the CA an extension server checks front-proxy certs with.
    front_proxy_ca: Path
    #: The client certificate kube-apiserver presents to aggregated servers (CN front-proxy-client).
    front_proxy_client: CertPair
    #: The ``--requestheader-*`` flags of the same name kube-apiserver runs with (harness.cluster.flags).
    requestheader_allowed_names: list[str] = field(
        default_factory=lambda: list(flags.REQUESTHEADER_ALLOWED_NAMES)
    )
    requestheader_username_headers: list[str] = field(
        default_factory=lambda: list(flags.REQUESTHEADER_USERNAME_HEADERS)
    )
    requestheader_group_headers: list[str] = field(
        default_factory=lambda: list(flags.REQUESTHEADER_GROUP_HEADERS)
    )
    requestheader_extra_headers_prefix: list[str] = field(
        default_factory=lambda: list(flags.REQUESTHEADER_EXTRA_HEADERS_PREFIX)
    )

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (``KUBECONFIG``)."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def start(state_root: Path, name: str = "hpa-kit-cp", progress: ProgressFn = print) -> ControlPlane:
    cluster = LocalCluster(LocalSettings(name=name, state_root=state_root, with_node=False))
    cluster.create(progress)
    pki = cluster.pki()
    return ControlPlane(
        cluster=cluster,
        kubeconfig=cluster.kubeconfig,
        server=cluster.server,
        ca=pki.ca.cert,
        admin=pki.admin,
        front_proxy_ca=pki.front_proxy_ca.cert,
        front_proxy_client=pki.front_proxy_client,
    )


@contextlib.contextmanager
def control_plane(
    state_root: Path, name: str = "hpa-kit-cp", progress: ProgressFn = print, keep: bool = False
) -> Iterator[ControlPlane]:
    """Start a control plane, yield it, and delete it (state dir included) afterwards."""
    cp = start(state_root, name, progress)
    try:
        yield cp
    finally:
        if not keep:
            cp.cluster.delete(progress)
