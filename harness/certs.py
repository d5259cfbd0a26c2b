"""Certificate generation for the kit, with cfssl + cfssljson driven through :func:`harness.procs.run`.

Why cfssl and not pure ``cryptography``: the kit documents a cfssl workflow for users (the scripts they
copy call cfssl), so the harness exercises exactly that path. ``cryptography`` is used only to *inspect*
what cfssl produced, which is what makes every call idempotent: a cluster PKI that is regenerated on each
run would invalidate every kubeconfig, caBundle and running component, so an existing certificate is kept
whenever it is still right (same issuer, subject, SANs and usage, and not close to expiry).

Files follow cfssljson's naming: ``<out>/<name>.pem`` (certificate) and ``<out>/<name>-key.pem`` (key,
mode 0600). New pairs are produced in a private temporary directory inside ``out_dir`` and renamed into
place only after they were checked, so a failed run never leaves a half-written pair and never destroys
a good one.

The module is also a small CLI (``python -m harness.certs`` / ``scripts/gen-certs.sh``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fcntl
import ipaddress
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import procs
from harness.errors import HarnessError

__all__ = [
    "CertError",
    "CertPair",
    "Usage",
    "ca_bundle",
    "ensure_ca",
    "issue_cert",
    "main",
    "service_hosts",
    "serving_bundle",
    "tls_secret_manifest",
    "validate_host",
    "write_kubeconfig",
]

Usage = Literal["server", "client", "both"]
KeyAlgo = Literal["ecdsa", "rsa"]

#: A certificate this close to its end is replaced (capped at a third of the requested lifetime, so
#: that short-lived test certificates are still kept between calls).
RENEW_BEFORE = dt.timedelta(days=30)

#: How long a cfssl call may take; key generation is the slow part and takes well under a second.
CFSSL_TIMEOUT_S = 60

_USAGE_EKUS: dict[str, frozenset[x509.ObjectIdentifier]] = {
    "server": frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
    "client": frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
    "both": frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
}
_PROFILE_USAGES: dict[str, list[str]] = {
    "server": ["signing", "key encipherment", "server auth"],
    "client": ["signing", "key encipherment", "client auth"],
    "both": ["signing", "key encipherment", "server auth", "client auth"],
}
_KEY_SPECS: dict[str, dict[str, object]] = {
    # ECDSA P-256 is the default: key generation is instant (RSA-2048 costs ~0.1-1 s per key on
    # these 2-core machines) and Kubernetes, Go and Python's ssl all accept it.
    "ecdsa": {"algo": "ecdsa", "size": 256},
    "rsa": {"algo": "rsa", "size": 2048},
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INSTALL_HINT = "install it (Debian: apt-get install golang-cfssl)"


class CertError(HarnessError):
    """A certificate operation failed; the message is one line that says what to do next."""


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        """The certificate's PEM bytes."""
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        """The private key's PEM bytes."""
        return self.key.read_bytes()

    def certificate(self) -> x509.Certificate:
        """The parsed certificate (for checks; raises CertError if it is not a PEM certificate)."""
        try:
            return x509.load_pem_x509_certificate(self.cert_pem())
        except (OSError, ValueError) as exc:
            raise CertError(f"cannot read certificate {self.cert}: {exc}; delete it to regenerate") from exc


# --------------------------------------------------------------------------------------------- input


def validate_host(host: str) -> str:
    """Return ``host`` normalised (lower-case DNS name, canonical IP) or raise CertError naming it.

    Validating here instead of letting cfssl decide matters: cfssl treats anything that is not an IP as
    a DNS name, so a typo such as ``svc..ns`` would silently end up in a certificate that then never
    matches. Wildcards are allowed only as the whole leftmost label (``*.example.com``), as RFC 6125 and
    Go's verifier require.
    """
    if not isinstance(host, str) or not host.strip():
        raise CertError(f"invalid SAN {host!r}: empty; pass a DNS name or an IP address")
    h = host.strip()
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        pass
    name = h.lower()
    labels = name.split(".")
    ok = 0 < len(name) <= 253 and all(labels)
    if ok:
        first, rest = (labels[0], labels[1:])
        if first == "*":
            ok = bool(rest)  # a bare "*" is not a usable wildcard
        else:
            rest = labels
        ok = ok and all(_DNS_LABEL.match(label) for label in rest)
        # An all-numeric last label means a mistyped IP (e.g. "10.0.0.256"), never a real host name.
        ok = ok and not labels[-1].isdigit()
    if not ok:
        raise CertError(
            f"invalid SAN {host!r}: neither a valid DNS name (RFC 1123, '*' only as the leftmost label) "
            "nor an IP address; fix the host list"
        )
    return name


def _normalise_hosts(hosts: Sequence[str]) -> list[str]:
    if isinstance(hosts, str):  # a lone string would otherwise be split into characters
        hosts = [hosts]
    seen: dict[str, None] = {}
    for host in hosts:
        seen.setdefault(validate_host(host), None)
    return list(seen)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _FILE_NAME.match(name) or name.endswith(".tmp"):
        raise CertError(f"invalid file name {name!r}: use letters, digits, '.', '_' and '-' only")


def _check_text(what: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
        raise CertError(f"invalid {what} {value!r}: pass a non-empty single-line string")


def _check_hours(expiry_hours: int) -> None:
    if isinstance(expiry_hours, bool) or not isinstance(expiry_hours, int) or expiry_hours < 1:
        raise CertError(f"invalid expiry_hours {expiry_hours!r}: pass a whole number of hours >= 1")


def _check_usage(usage: str) -> None:
    if usage not in _USAGE_EKUS:
        raise CertError(f"invalid usage {usage!r}: pick one of server, client, both")


def _check_key_algo(key_algo: str) -> None:
    if key_algo not in _KEY_SPECS:
        raise CertError(f"invalid key_algo {key_algo!r}: pick one of {', '.join(_KEY_SPECS)}")


# ------------------------------------------------------------------------------------------- tooling


def _tool(env_var: str, default: str) -> str:
    """Locate a cfssl binary; ``$CFSSL`` / ``$CFSSLJSON`` win over PATH so users can pin a build."""
    override = os.environ.get(env_var)
    if override:
        found = shutil.which(override)
        if not found:
            raise CertError(
                f"{env_var}={override} is not an executable: fix the path, or unset {env_var} to use PATH"
            )
        return found
    found = shutil.which(default)
    if not found:
        raise CertError(f"{default} not found on PATH: {_INSTALL_HINT} or set {env_var}=/path/to/{default}")
    return found


def _tools() -> tuple[str, str]:
    return _tool("CFSSL", "cfssl"), _tool("CFSSLJSON", "cfssljson")


def _run(argv: list[str], stdin: bytes, what: str) -> bytes:
    """``argv`` fed ``stdin``; its stdout. A failure quotes cfssl's last line (its error; the lines
    before it are progress)."""
    return procs.run(
        argv, input=stdin, text=False, timeout=CFSSL_TIMEOUT_S, what=what, lines=1, error=CertError,
        missing="reinstall it or set CFSSL/CFSSLJSON",
    ).stdout  # fmt: skip


def _cfssl_pair(tmp: Path, name: str, gencert_args: list[str], csr: dict[str, object]) -> CertPair:
    """Run ``cfssl gencert ARGS - | cfssljson -bare tmp/name`` and return the pair it wrote in ``tmp``.

    The two programs are run one after the other rather than through a shell pipe so that a cfssl
    failure is reported with cfssl's own message instead of cfssljson's "failed to parse input".
    """
    cfssl, cfssljson = _tools()
    out = _run([cfssl, "gencert", *gencert_args, "-"], json.dumps(csr).encode(), "cfssl gencert")
    _run([cfssljson, "-bare", str(tmp / name)], out, "cfssljson")
    pair = CertPair(cert=tmp / f"{name}.pem", key=tmp / f"{name}-key.pem")
    if not (pair.cert.is_file() and pair.key.is_file()):
        raise CertError(f"cfssljson wrote no {name}.pem/{name}-key.pem: check the cfssl installation")
    pair.key.chmod(0o600)
    pair.cert.chmod(0o644)
    return pair


# ------------------------------------------------------------------------------------ files & locking


def _prepare_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` and prove it is writable before any key is generated."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CertError(
            f"cannot write to {out_dir}: {reason}; fix its permissions or pick another directory with --out"
        ) from exc
    return out_dir


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """Serialise writers of one directory, so two parallel test workers cannot mint two CAs."""
    fd = os.open(out_dir / ".certs.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def _scratch(out_dir: Path) -> Iterator[Path]:
    """A private temporary directory on the same filesystem as ``out_dir`` (so rename is atomic)."""
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".cfssl-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(new: CertPair, out_dir: Path, name: str) -> CertPair:
    """Move a freshly generated pair into place.

    Key first, then certificate: if the process dies in between, the old certificate no longer matches
    the new key, which the next call's key check notices and repairs; a reader never sees a truncated
    file because each step is a rename.
    """
    final = CertPair(cert=out_dir / f"{name}.pem", key=out_dir / f"{name}-key.pem")
    try:
        os.replace(new.key, final.key)
        os.replace(new.cert, final.cert)
    except OSError as exc:
        raise CertError(f"cannot write {final.cert}: {exc.strerror}; fix permissions of {out_dir}") from exc
    return final


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via temp file + rename, with ``mode`` set before any byte is written.

    An identical file is left alone, so repeated runs do not touch mtimes (and do not wake up file
    watchers such as the adapter's certificate hot reload).
    """
    path = Path(path)
    with contextlib.suppress(OSError):
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise CertError(
            f"cannot write to {path.parent}: {exc.strerror or exc}; fix its permissions or pick another path"
        ) from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CertError(f"cannot write {path}: {exc.strerror}; fix permissions of {path.parent}") from exc
    return path


# ------------------------------------------------------------------------------------------ checking


def _load(pair: CertPair) -> tuple[x509.Certificate, object] | None:
    """Parse a pair on disk, or None if either half is missing or unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return cert, key


def _key_matches(cert: x509.Certificate, key: object) -> bool:
    pub = getattr(key, "public_key", None)
    if pub is None:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(pub().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))


def _key_algo_of(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return "other"


def _fresh(cert: x509.Certificate, expiry_hours: int) -> bool:
    """Still valid now and not within the renewal window of its end."""
    now = dt.datetime.now(dt.UTC)
    window = min(RENEW_BEFORE, dt.timedelta(hours=expiry_hours) / 3)
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > window


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {name.lower() for name in ext.get_values_for_type(x509.DNSName)}
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return dns | ips


def _ekus(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _valid_ca(pair: CertPair, expiry_hours: int) -> bool:
    loaded = _load(pair)
    if loaded is None:
        return False
    cert, key = loaded
    return _is_ca(cert) and _key_matches(cert, key) and _fresh(cert, expiry_hours)


def _matches(
    pair: CertPair,
    ca_cert: x509.Certificate,
    common_name: str,
    hosts: list[str],
    organizations: Sequence[str],
    usage: str,
    expiry_hours: int,
    key_algo: str,
) -> bool:
    loaded = _load(pair)
    if loaded is None:
        return False
    cert, key = loaded
    return (
        _signed_by(cert, ca_cert)
        and _key_matches(cert, key)
        and _key_algo_of(key) == key_algo
        and not _is_ca(cert)
        and _attr(cert, NameOID.COMMON_NAME) == [common_name]
        and sorted(_attr(cert, NameOID.ORGANIZATION_NAME)) == sorted(set(organizations))
        and _sans(cert) == set(hosts)
        and _ekus(cert) == _USAGE_EKUS[usage]
        and _fresh(cert, expiry_hours)
    )


# ------------------------------------------------------------------------------------------- the API


def ensure_ca(
    out_dir: Path,
    name: str = "ca",
    common_name: str = "hpa-kit-ca",
    *,
    rotate: bool = False,
    expiry_hours: int = 87600,
    key_algo: KeyAlgo = "ecdsa",
) -> CertPair:
    """Return the CA ``out_dir/{name}.pem`` + ``{name}-key.pem``, creating it only when needed.

    An existing CA is kept when it parses, is a CA, its key matches and it does not end within 30 days:
    everything already issued and every caBundle already deployed stays valid. ``rotate=True`` always
    makes a new CA (certificates issued from the old one are then re-issued by :func:`issue_cert`,
    because they no longer verify against it).
    """
    _check_name(name)
    _check_text("common name", common_name)
    _check_hours(expiry_hours)
    _check_key_algo(key_algo)
    out_dir = _prepare_dir(out_dir)
    pair = CertPair(cert=out_dir / f"{name}.pem", key=out_dir / f"{name}-key.pem")
    with _locked(out_dir):
        if not rotate and _valid_ca(pair, expiry_hours):
            return pair
        csr: dict[str, object] = {
            "CN": common_name,
            "key": _KEY_SPECS[key_algo],
            "names": [{"O": "hpa-kit"}],
            "ca": {"expiry": f"{expiry_hours}h"},
        }
        with _scratch(out_dir) as tmp:
            new = _cfssl_pair(tmp, name, ["-initca"], csr)
            if not _valid_ca(new, expiry_hours):
                raise CertError(f"cfssl produced an unusable CA {name}: check the cfssl installation")
            return _install(new, out_dir, name)


def issue_cert(
    out_dir: Path,
    name: str,
    ca: CertPair,
    common_name: str,
    *,
    hosts: Sequence[str] = (),
    organizations: Sequence[str] = (),
    usage: Usage = "server",
    expiry_hours: int = 8760,
    reissue: bool = False,
    key_algo: KeyAlgo = "ecdsa",
) -> CertPair:
    """Return ``out_dir/{name}.pem`` + ``{name}-key.pem`` signed by ``ca``, issuing only when needed.

    Kept as is when it is signed by ``ca``, its key matches, and CN, O (as a set: Kubernetes reads every
    O as a group, e.g. ``system:masters``), SANs and usage are what was asked for and it does not end
    within 30 days. Anything else, or ``reissue=True``, issues a new one. ``hosts`` may mix DNS names
    and IP addresses; cfssl puts IPs into IP SANs.
    """
    _check_name(name)
    _check_text("common name", common_name)
    if isinstance(organizations, str):
        organizations = [organizations]
    for org in organizations:
        _check_text("organization", org)
    _check_usage(usage)
    _check_hours(expiry_hours)
    _check_key_algo(key_algo)
    wanted_hosts = _normalise_hosts(hosts)
    ca_cert = ca.certificate()
    if not _is_ca(ca_cert):
        raise CertError(f"{ca.cert} is not a CA certificate: pass the pair returned by ensure_ca()")
    if not ca.key.is_file():
        raise CertError(f"CA key {ca.key} is missing: restore it, or make a new CA (ensure_ca rotate=True)")
    out_dir = _prepare_dir(out_dir)
    pair = CertPair(cert=out_dir / f"{name}.pem", key=out_dir / f"{name}-key.pem")
    if pair.cert.resolve() == ca.cert.resolve():
        raise CertError(f"name {name!r} would overwrite the CA {ca.cert}: pick another name")
    orgs = list(dict.fromkeys(organizations))
    with _locked(out_dir):
        if not reissue and _matches(
            pair, ca_cert, common_name, wanted_hosts, orgs, usage, expiry_hours, key_algo
        ):
            return pair
        config = {
            "signing": {
                "default": {"expiry": f"{expiry_hours}h", "usages": _PROFILE_USAGES[usage]},
                "profiles": {
                    profile: {"expiry": f"{expiry_hours}h", "usages": usages}
                    for profile, usages in _PROFILE_USAGES.items()
                },
            }
        }
        csr: dict[str, object] = {"CN": common_name, "key": _KEY_SPECS[key_algo]}
        if orgs:
            csr["names"] = [{"O": org} for org in orgs]
        with _scratch(out_dir) as tmp:
            config_path = tmp / "cfssl-config.json"
            config_path.write_text(json.dumps(config))
            args = [
                f"-ca={ca.cert}",
                f"-ca-key={ca.key}",
                f"-config={config_path}",
                f"-profile={usage}",
                f"-hostname={','.join(wanted_hosts)}",
            ]
            new = _cfssl_pair(tmp, name, args, csr)
            if not _matches(new, ca_cert, common_name, wanted_hosts, orgs, usage, expiry_hours, key_algo):
                raise CertError(
                    f"cfssl issued {name} with unexpected contents (CN/O/SANs/usage): "
                    "check the cfssl version (cfssl version)"
                )
            return _install(new, out_dir, name)


def service_hosts(service: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """Every name a client may use for a Service: the aggregator dials ``svc.ns.svc`` specifically."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def ca_bundle(ca: CertPair) -> str:
    """Base64 of the CA PEM, the form ``APIService.spec.caBundle`` and webhook configs expect."""
    return base64.b64encode(ca.cert_pem()).decode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tls_secret_manifest(name: str, namespace: str, pair: CertPair, ca: CertPair | None = None) -> dict:
    """A ``kubernetes.io/tls`` Secret holding ``pair`` (and ``ca.crt`` when ``ca`` is given)."""
    data = {"tls.crt": _b64(pair.cert_pem()), "tls.key": _b64(pair.key_pem())}
    if ca is not None:
        data["ca.crt"] = _b64(ca.cert_pem())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": data,
    }


def _dump_yaml(doc: object) -> bytes:
    try:
        import yaml
    except ImportError:  # JSON is valid YAML; keeps the module usable without PyYAML
        return (json.dumps(doc, indent=2) + "\n").encode()
    return yaml.safe_dump(doc, sort_keys=False).encode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca: CertPair,
    client: CertPair,
    cluster: str = "hpa-kit",
    user: str = "admin",
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded, mode 0600) and return its path.

    Embedding instead of referencing files means the kubeconfig keeps working when it is copied into a
    report or a pod, and a later rotation never leaves it pointing at a mismatched pair.
    """
    _check_text("server", server)
    context = f"{user}@{cluster}"
    ca_data = _b64(ca.cert_pem())
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem()),
                    "client-key-data": _b64(client.key_pem()),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    }
    return _atomic_write(Path(path), _dump_yaml(doc), mode=0o600)


def serving_bundle(
    out_dir: Path,
    service: str,
    namespace: str,
    *,
    extra_hosts: Sequence[str] = (),
    rotate_ca: bool = False,
) -> dict[str, object]:
    """CA + serving certificate for a Service, plus ``secret.yaml`` and ``cabundle.txt`` in ``out_dir``.

    The one call the adapter install needs: the Secret is mounted by the adapter Deployment and the
    caBundle goes into its APIServices. The serving pair is named ``{service}-serving`` so a Service
    called ``ca`` cannot overwrite the CA.
    """
    if isinstance(extra_hosts, str):
        extra_hosts = [extra_hosts]
    hosts = [*service_hosts(service, namespace), *extra_hosts]
    _normalise_hosts(hosts)  # reject bad input before anything is written
    ca = ensure_ca(out_dir, rotate=rotate_ca)
    serving = issue_cert(
        out_dir, f"{service}-serving", ca, f"{service}.{namespace}.svc", hosts=hosts, usage="server"
    )
    secret = tls_secret_manifest(f"{service}-tls", namespace, serving, ca)
    secret_path = _atomic_write(Path(out_dir) / "secret.yaml", _dump_yaml(secret), mode=0o600)
    bundle = ca_bundle(ca)
    _atomic_write(Path(out_dir) / "cabundle.txt", (bundle + "\n").encode())
    return {"ca": ca, "serving": serving, "secret": secret_path, "ca_bundle": bundle}


# ------------------------------------------------------------------------------------------------ CLI


def _file_name_for(common_name: str) -> str:
    """``system:kube-scheduler`` -> ``system-kube-scheduler``: a CN is not always a safe file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", common_name).strip("-.")
    return cleaned or "client"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen-certs", description="Generate hpa-kit certificates with cfssl (idempotent)."
    )
    parser.add_argument("--out", type=Path, default=Path(".state/certs"), help="output dir (.state/certs)")
    sub = parser.add_subparsers(dest="command", required=True)

    serving = sub.add_parser("serving", help="CA + serving cert + Secret + caBundle for a Service")
    serving.add_argument("--service", required=True)
    serving.add_argument("--namespace", required=True)
    serving.add_argument("--host", action="append", default=[], help="extra SAN (DNS or IP), repeatable")
    serving.add_argument("--rotate-ca", action="store_true", help="make a new CA and re-issue")

    ca = sub.add_parser("ca", help="create (or keep) a CA")
    ca.add_argument("--name", default="ca", help="file name stem (ca)")
    ca.add_argument("--cn", default="hpa-kit-ca", help="CA common name")
    ca.add_argument("--rotate", action="store_true", help="replace an existing valid CA")

    client = sub.add_parser("client", help="client certificate signed by the CA")
    client.add_argument("--cn", required=True, help="common name (the Kubernetes user name)")
    client.add_argument("--org", action="append", default=[], help="O (a Kubernetes group), repeatable")
    client.add_argument("--name", default=None, help="file name stem (default: from --cn)")
    client.add_argument("--ca-name", default="ca", help="CA file name stem (ca)")
    client.add_argument("--reissue", action="store_true")

    # Accept --out after the sub-command too ("serving ... --out DIR"), which is how people type it.
    for p in (serving, ca, client):
        p.add_argument("--out", type=Path, default=argparse.SUPPRESS, help="output dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; errors are one line on stderr and exit code 2."""
    args = _parser().parse_args(argv)
    out: Path = args.out
    try:
        if args.command == "serving":
            result = serving_bundle(
                out, args.service, args.namespace, extra_hosts=args.host, rotate_ca=args.rotate_ca
            )
            ca_pair, serving_pair = result["ca"], result["serving"]
            assert isinstance(ca_pair, CertPair) and isinstance(serving_pair, CertPair)
            print(f"ca:       {ca_pair.cert} {ca_pair.key}")
            print(f"serving:  {serving_pair.cert} {serving_pair.key}")
            print(f"secret:   {result['secret']} ({args.service}-tls in {args.namespace})")
            print(f"cabundle: {out / 'cabundle.txt'}")
            print(f"caBundle: {result['ca_bundle']}")
        elif args.command == "ca":
            ca_pair = ensure_ca(out, args.name, args.cn, rotate=args.rotate)
            print(f"ca:       {ca_pair.cert} {ca_pair.key}")
            print(f"caBundle: {ca_bundle(ca_pair)}")
        else:
            ca_pair = ensure_ca(out, args.ca_name)
            name = args.name or _file_name_for(args.cn)
            pair = issue_cert(
                out, name, ca_pair, args.cn, organizations=args.org, usage="client", reissue=args.reissue
            )
            print(f"ca:       {ca_pair.cert}")
            print(f"client:   {pair.cert} {pair.key}")
            print(f"caBundle: {ca_bundle(ca_pair)}")
    except CertError as exc:
        print(f"gen-certs: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
