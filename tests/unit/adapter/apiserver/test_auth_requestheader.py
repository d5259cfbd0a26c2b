"""Front-proxy impersonation settings are explicit (issue 12, finding 2).

An empty ``requestheader-allowed-names`` lets *any* certificate of the front-proxy CA assert any
user: the adapter says so at start-up. A CA given by flag no longer silently drops the
ConfigMap's allowed names (nor its header names): only ``--requestheader-allowed-names`` replaces
them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from adapter.apiserver.auth import (
    Authenticator,
    AuthnConfig,
    AuthnOverrides,
    ConfigMapAuthnSource,
    RequestHeaderConfig,
    config_from_configmap,
    requestheader_warnings,
)
from adapter.errors import Unauthorized
from tests.support.adapter_pki import make_ca, make_leaf

FRONT_CA = make_ca("front-proxy-ca")
AGGREGATOR = make_leaf(FRONT_CA, "front-proxy-client")
ROGUE = make_leaf(FRONT_CA, "some-other-component")
HEADERS = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}


def configmap(allowed: list[str] | None = ("front-proxy-client",), **extra: str) -> dict[str, str]:  # type: ignore[assignment]
    data = {"requestheader-client-ca-file": FRONT_CA.cert_pem.decode(), **extra}
    if allowed is not None:
        data["requestheader-allowed-names"] = json.dumps(list(allowed))
    return data


@pytest.fixture
def ca_file(tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "front-proxy-ca.pem"
    path.write_bytes(FRONT_CA.cert_pem)
    return str(path)


def test_ca_flag_keeps_configmap_allowed_names(ca_file: str) -> None:
    cfg = AuthnOverrides(requestheader_client_ca_file=ca_file).apply(config_from_configmap(configmap()))
    assert cfg.requestheader is not None
    assert cfg.requestheader.allowed_names == ("front-proxy-client",)


def test_ca_flag_keeps_configmap_header_names(ca_file: str) -> None:
    base = config_from_configmap(
        configmap(**{"requestheader-username-headers": '["X-Proxy-User"]',
                     "requestheader-group-headers": '["X-Proxy-Group"]'})
    )
    cfg = AuthnOverrides(requestheader_client_ca_file=ca_file).apply(base)
    assert cfg.requestheader is not None
    assert cfg.requestheader.username_headers == ("X-Proxy-User",)
    assert cfg.requestheader.group_headers == ("X-Proxy-Group",)


async def test_ca_flag_rogue_cert_cannot_impersonate(ca_file: str) -> None:
    cfg = AuthnOverrides(requestheader_client_ca_file=ca_file).apply(config_from_configmap(configmap()))
    authn = Authenticator(lambda: cfg)
    with pytest.raises(Unauthorized, match="not in requestheader-allowed-names"):
        await authn.authenticate(HEADERS, ROGUE.der)
    assert (await authn.authenticate(HEADERS, AGGREGATOR.der)).name == "system:admin"


def test_allowed_names_flag_replaces_configmap_explicitly(ca_file: str) -> None:
    base = config_from_configmap(configmap())
    both = AuthnOverrides(requestheader_client_ca_file=ca_file, requestheader_allowed_names=("aggregator",))
    cfg = both.apply(base)
    assert cfg.requestheader is not None and cfg.requestheader.allowed_names == ("aggregator",)
    cfg = AuthnOverrides(requestheader_allowed_names=("aggregator",)).apply(base)
    assert cfg.requestheader is not None and cfg.requestheader.allowed_names == ("aggregator",)


def test_ca_flag_without_configmap_section_has_empty_names_and_warns(ca_file: str) -> None:
    cfg = AuthnOverrides(requestheader_client_ca_file=ca_file).apply(AuthnConfig())
    assert cfg.requestheader is not None and cfg.requestheader.allowed_names == ()
    (warning,) = requestheader_warnings(cfg)
    assert "requestheader-allowed-names is empty" in warning and "any user" in warning


def test_warnings_only_when_names_empty() -> None:
    assert requestheader_warnings(AuthnConfig()) == []
    named = AuthnConfig(requestheader=RequestHeaderConfig((FRONT_CA.cert,), ("front-proxy-client",)))
    assert requestheader_warnings(named) == []
    for allowed in (None, []):
        assert requestheader_warnings(config_from_configmap(configmap(allowed)))


class _Kube:
    def __init__(self, data: dict[str, str]) -> None:
        self.data = data

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        return {"data": self.data}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError


async def test_startup_logs_a_warning_for_empty_allowed_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="adapter.apiserver.auth"):
        await ConfigMapAuthnSource(_Kube(configmap(None))).load()
    assert "requestheader-allowed-names is empty" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adapter.apiserver.auth"):
        await ConfigMapAuthnSource(_Kube(configmap())).load()
    assert "requestheader-allowed-names" not in caplog.text
