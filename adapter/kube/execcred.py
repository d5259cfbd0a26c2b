"""Credentials from a kubeconfig ``exec`` plugin (``users[].user.exec``), refreshed before they expire.

Managed clusters (EKS, GKE, AKS) hand out short-lived tokens through a command such as
``aws eks get-token``. The official client's loader runs that command once, so a long-running
``serve --kubeconfig`` would start failing with 401 once the first token expires. This module runs
the plugin the way kubectl does (the configured ``args`` and ``env`` on top of ours,
``KUBERNETES_EXEC_INFO`` carrying the ``ExecCredential`` spec, stdin closed because a server has
no terminal), parses its ``ExecCredential`` status, caches it until shortly before
``expirationTimestamp`` and lets the client force a refresh after a 401.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapter.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")


@dataclass(frozen=True)
class ExecConfig:
    """The ``exec`` section of one kubeconfig user, with relative paths already resolved."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_API_VERSIONS[0]
    cluster: Mapping[str, Any] | None = None  # spec.cluster when provideClusterInfo is true
    timeout: float = 60.0


@dataclass(frozen=True)
class ExecCredential:
    """What the plugin answered: a bearer token or a client certificate and key (PEM)."""

    token: str | None = None
    client_certificate_data: str | None = None
    client_key_data: str | None = None
    expires: datetime | None = None


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(f"kubeconfig {path}: {message}")


def exec_config_from_kubeconfig(
    section: Mapping[str, Any], *, base_dir: str, cluster: Mapping[str, Any], where: str
) -> ExecConfig:
    """Check a ``users[].user.exec`` mapping (``where`` names it in errors) and resolve it.

    A relative ``command`` containing a path separator is taken relative to the kubeconfig's
    directory, as kubectl does; a bare name is looked up on PATH when it runs.
    """
    command = section.get("command")
    if not isinstance(command, str) or not command:
        raise _fail(where, "exec.command is missing; set the plugin's command (e.g. aws)")
    api_version = section.get("apiVersion") or ""
    if api_version not in EXEC_API_VERSIONS:
        raise _fail(
            where,
            f"exec.apiVersion {api_version!r} is not supported; use one of {', '.join(EXEC_API_VERSIONS)}",
        )
    mode = section.get("interactiveMode")
    if mode is None and api_version.endswith("/v1"):
        raise _fail(where, "exec.interactiveMode is required with apiVersion v1; set Never or IfAvailable")
    if mode is not None and mode not in INTERACTIVE_MODES:
        raise _fail(where, f"exec.interactiveMode {mode!r} is not one of {', '.join(INTERACTIVE_MODES)}")
    if mode == "Always":
        raise _fail(where, "exec.interactiveMode Always needs a terminal, which the adapter never has")
    if os.sep in command and not os.path.isabs(command):
        command = os.path.normpath(os.path.join(base_dir, command))
    args = section.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _fail(where, "exec.args must be a list of strings")
    env: list[tuple[str, str]] = []
    for item in section.get("env") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise _fail(where, "exec.env entries must be {name, value} mappings")
        env.append((item["name"], str(item.get("value") or "")))
    return ExecConfig(
        command=command,
        args=tuple(args),
        env=tuple(env),
        api_version=api_version,
        cluster=_cluster_info(cluster, base_dir) if section.get("provideClusterInfo") else None,
    )


def _cluster_info(cluster: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """``spec.cluster`` of the ExecCredential: the kubeconfig cluster in the ExecCredential's names."""
    out: dict[str, Any] = {"server": cluster.get("server", "")}
    if cluster.get("tls-server-name"):
        out["tls-server-name"] = cluster["tls-server-name"]
    if cluster.get("insecure-skip-tls-verify"):
        out["insecure-skip-tls-verify"] = True
    ca_data = cluster.get("certificate-authority-data")
    if not ca_data and cluster.get("certificate-authority"):
        ca_path = Path(base_dir, cluster["certificate-authority"])
        try:
            ca_data = base64.b64encode(ca_path.read_bytes()).decode()
        except OSError as err:
            raise ConfigError(f"cannot read certificate-authority {ca_path}: {err}") from err
    if ca_data:
        out["certificate-authority-data"] = ca_data
    if cluster.get("proxy-url"):
        out["proxy-url"] = cluster["proxy-url"]
    extension = next(
        (e.get("extension") for e in cluster.get("extensions") or []
         if isinstance(e, Mapping) and e.get("name") == "client.authentication.k8s.io/exec"),
        None,
    )
    if extension is not None:
        out["config"] = extension
    return out


def exec_info(config: ExecConfig) -> str:
    """The ``KUBERNETES_EXEC_INFO`` value: an ExecCredential with only its spec filled in."""
    spec: dict[str, Any] = {"interactive": False}
    if config.cluster is not None:
        spec["cluster"] = dict(config.cluster)
    return json.dumps({"apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec})


def parse_exec_credential(config: ExecConfig, stdout: bytes) -> ExecCredential:
    """Read the plugin's stdout; anything kubectl would refuse is a :class:`BackendUnavailable`."""
    what = f"exec plugin {config.command!r}"
    try:
        doc = json.loads(stdout)
    except ValueError as err:
        raise BackendUnavailable(f"{what} did not print an ExecCredential (not JSON: {err})") from err
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise BackendUnavailable(f"{what} printed {str(doc)[:100]!r}, not an ExecCredential")
    if doc.get("apiVersion") != config.api_version:
        raise BackendUnavailable(
            f"{what} answered apiVersion {doc.get('apiVersion')!r}; "
            f"the kubeconfig asks for {config.api_version}"
        )
    status = doc.get("status")
    if not isinstance(status, dict):
        raise BackendUnavailable(f"{what} answered an ExecCredential without status")
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData") or None, status.get("clientKeyData") or None
    if bool(cert) != bool(key):
        raise BackendUnavailable(f"{what} answered only one of clientCertificateData and clientKeyData")
    if not token and not cert:
        raise BackendUnavailable(f"{what} answered neither a token nor a client certificate and key")
    expires = None
    if status.get("expirationTimestamp"):
        text = str(status["expirationTimestamp"])
        try:
            expires = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as err:
            raise BackendUnavailable(f"{what} answered expirationTimestamp {text!r}: {err}") from err
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return ExecCredential(token, cert, key, expires)


@dataclass
class ExecCredentialSource:
    """Runs the plugin when there is no credential, or it expires soon, or after a 401.

    ``refresh_before`` is how long before ``expirationTimestamp`` a credential is replaced (at most a
    quarter of its lifetime, so a short-lived one is not fetched on every request). A credential
    without an expiry is kept until :meth:`invalidate`.
    """

    config: ExecConfig
    refresh_before: timedelta = timedelta(seconds=30)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    runs: int = 0
    _cached: ExecCredential | None = None
    _refresh_at: datetime | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def invalidate(self, stale: ExecCredential | None = None) -> None:
        """Forget the credential (after a 401), unless another request already replaced ``stale``."""
        if stale is None or stale is self._cached:
            self._cached = None

    async def get(self) -> ExecCredential:
        async with self._lock:
            cached = self._cached
            if cached is not None and (self._refresh_at is None or self.now() < self._refresh_at):
                return cached
            fetched_at = self.now()
            cred = await self._run()
            self._cached = cred
            self._refresh_at = None
            if cred.expires is not None:
                margin = min(self.refresh_before, max(cred.expires - fetched_at, timedelta(0)) / 4)
                self._refresh_at = cred.expires - margin
            return cred

    async def _run(self) -> ExecCredential:
        config = self.config
        env = dict(os.environ)
        env.update(config.env)
        env["KUBERNETES_EXEC_INFO"] = exec_info(config)
        self.runs += 1
        shown = " ".join([config.command, *config.args])
        try:
            proc = await asyncio.create_subprocess_exec(
                config.command,
                *config.args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            raise BackendUnavailable(
                f"kubeconfig exec plugin {shown!r} cannot be started: {err}; "
                "install it or fix users[].user.exec"
            ) from err
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), config.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BackendUnavailable(
                f"kubeconfig exec plugin {shown!r} did not finish in {config.timeout:g}s"
            ) from None
        err_text = stderr.decode(errors="replace").strip()
        if proc.returncode != 0:
            raise BackendUnavailable(
                f"kubeconfig exec plugin {shown!r} failed with exit code {proc.returncode}: "
                f"{err_text[-1000:] or '(no stderr)'}; run it by hand to see why (expired login?)"
            )
        if err_text:
            log.debug("exec plugin %s stderr: %s", shown, err_text[-1000:])
        cred = parse_exec_credential(config, stdout)
        log.info(
            "kubeconfig exec plugin %s gave a %s%s",
            config.command,
            "token" if cred.token else "client certificate",
            f" valid until {cred.expires.isoformat()}" if cred.expires else " without expiry",
        )
        return cred


__all__ = [
    "EXEC_API_VERSIONS",
    "ExecConfig",
    "ExecCredential",
    "ExecCredentialSource",
    "exec_config_from_kubeconfig",
    "exec_info",
    "parse_exec_credential",
]
