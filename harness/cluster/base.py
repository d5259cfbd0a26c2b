"""The cluster provider interface every scenario is written against.

A provider turns "I need a Kubernetes cluster" into a kubeconfig. Scenarios never look past this
interface, which is what lets the same test run on ``local`` (upstream binaries on this machine),
``kind`` (Docker) and ``existing`` (any kubeconfig).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.progress import ProgressFn

if TYPE_CHECKING:
    from harness.kubectl import Kubectl

__all__ = ["Cluster", "ClusterError", "ClusterInfo", "ComponentState", "ProviderUnavailable"]


class ClusterError(HarnessError):
    """A cluster operation failed; the message is meant for a human and says what to do next."""


class ProviderUnavailable(ClusterError):
    """The provider cannot work on this machine (no Docker, not root, ...)."""


@dataclass
class ComponentState:
    """One process or add-on of a cluster, as ``status`` shows it."""

    name: str
    state: str  # "running" | "stopped" | "crashed" | "ready" | "not ready" | "unknown"
    pid: int | None = None
    detail: str = ""
    log: str | None = None


@dataclass
class ClusterInfo:
    """What a provider knows about its cluster, for status output and reports."""

    name: str
    provider: str
    kubeconfig: Path | None
    server: str | None = None
    node: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    components: list[ComponentState] = field(default_factory=list)
    state_dir: Path | None = None
    running: bool = False

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["kubeconfig"] = str(self.kubeconfig) if self.kubeconfig else None
        data["state_dir"] = str(self.state_dir) if self.state_dir else None
        return data

    def render(self) -> str:
        """Human-readable multi-line status."""
        lines = [
            f"cluster {self.name} (provider {self.provider}): {'running' if self.running else 'not running'}",
            f"  kubeconfig: {self.kubeconfig or '-'}",
            f"  server:     {self.server or '-'}",
        ]
        if self.node:
            lines.append(f"  node:       {self.node}")
        if self.state_dir:
            lines.append(f"  state dir:  {self.state_dir}")
        if self.versions:
            lines.append("  versions:   " + ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items())))
        for c in self.components:
            pid = f" pid {c.pid}" if c.pid else ""
            detail = f" - {c.detail}" if c.detail else ""
            lines.append(f"  {c.name:<24} {c.state}{pid}{detail}")
        return "\n".join(lines)


class Cluster(abc.ABC):
    """A Kubernetes cluster the harness can create, use and delete."""

    #: provider name: "local", "kind", "existing"
    provider: str = ""
    #: False where nodes never pull (local, kind here): whatever runs must be loaded with load_images.
    pulls_images: bool = True

    #: The kubeconfig context to use (None: the kubeconfig's current context).
    context: str | None = None

    def __init__(self, name: str = "hpa-kit") -> None:
        self.name = name

    def kubectl(self) -> Kubectl:
        """The kubectl every caller uses for this cluster: its kubeconfig and its context."""
        from harness.kubectl import Kubectl

        return Kubectl(self.kubeconfig, context=self.context)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this provider can work here, and if not, why (one line)."""
        return True, ""

    @abc.abstractmethod
    def create(self, progress: ProgressFn = print) -> ClusterInfo:
        """Make the cluster exist and run (idempotent: a running cluster is left as is)."""

    @abc.abstractmethod
    def delete(self, progress: ProgressFn = print) -> None:
        """Stop the cluster and remove everything it stored."""

    def stop(self, progress: ProgressFn = print) -> None:
        """Stop the cluster but keep its state for a fast next ``create`` (default: same as delete)."""
        self.delete(progress)

    @property
    @abc.abstractmethod
    def kubeconfig(self) -> Path:
        """Path of an admin kubeconfig for the cluster."""

    @abc.abstractmethod
    def load_images(self, images: Iterable[str | Path], progress: ProgressFn = print) -> None:
        """Make images available to the cluster's nodes: image names or OCI archive paths."""

    @abc.abstractmethod
    def info(self) -> ClusterInfo:
        """Current state of the cluster (cheap; never changes anything)."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """True if the cluster (or its stored state) exists."""

    @abc.abstractmethod
    def running(self) -> bool:
        """True if the cluster's API answers."""

    def logs(self, component: str) -> Path:  # pragma: no cover - providers override when they can
        """Path of a component's log file."""
        raise ClusterError(f"the {self.provider} provider does not keep component logs")

    def components(self) -> Sequence[str]:
        """Names accepted by :meth:`logs`."""
        return ()
