"""``hpa-kit-adapter`` flag parsing and up-front validation (bad input: one line, exit 2)."""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.cli import UsageError, build_parser, main, parse_duration, validate_serve
from tests.support.adapter_pki import make_ca, make_leaf


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m", 60), ("500ms", 0.5), ("1h30m", 5400), ("1m30s", 90), ("10", 10), ("2.5s", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1m 30s", "-1s", "1s1", "m1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_serve_defaults_and_aliases() -> None:
    args = build_parser().parse_args(
        ["serve", "--lister-kubeconfig", "/k", "--metrics-relist-interval", "30s", "--static-metrics", "a, b"]
    )
    assert args.kubeconfig == "/k" and args.metrics_relist_interval == 30
    assert args.secure_port == 6443 and args.bind_address == "0.0.0.0"
    assert args.authn_mode == "delegated" and args.authz_mode == "delegated"
    assert args.prometheus_timeout == 10 and args.static_metrics == ["a", "b"]
    assert args.static_value == Decimal(1)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    cert, key = make_leaf(make_ca("ca"), "adapter", usage="server").write(tmp_path, "tls")
    return str(cert), str(key)


def _serve(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_validate_static_ok(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    checked = validate_serve(
        _serve(
            "--tls-cert-file",
            cert,
            "--tls-private-key-file",
            key,
            "--provider",
            "static",
            "--authn-mode",
            "none",
            "--authz-mode",
            "always-allow",
        )
    )
    assert checked.needs_cluster is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--prometheus-url is required"),
        (["--prometheus-url", "prom:9090", "--config", "/nope.yaml"], "must start with http"),
        (["--prometheus-url", "http://prom:9090"], "--config is required"),
        (["--prometheus-url", "http://prom:9090", "--config", "/nope.yaml"], "not found"),
        (["--provider", "static", "--requestheader-client-ca-file", "/nope.pem"], "file not found"),
        (["--provider", "static", "--metrics-bind-address", "9090"], "--metrics-bind-address"),
    ],
)
def test_validate_errors(tls_files: tuple[str, str], extra: list[str], message: str) -> None:
    cert, key = tls_files
    with pytest.raises(UsageError, match=message):
        validate_serve(_serve("--tls-cert-file", cert, "--tls-private-key-file", key, *extra))


def test_not_a_pem_ca_file(tls_files: tuple[str, str], tmp_path: Path) -> None:
    cert, key = tls_files
    bad = tmp_path / "ca.pem"
    bad.write_text("hello")
    with pytest.raises(UsageError, match="PEM"):
        validate_serve(
            _serve(
                "--tls-cert-file",
                cert,
                "--tls-private-key-file",
                key,
                "--provider",
                "static",
                "--client-ca-file",
                str(bad),
            )
        )


def test_main_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--provider", "static"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tls-cert-file" in err[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--secure-port", "99999"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["lint", "--config", "/nope.yaml", "--prometheus-url", "http://127.0.0.1:1"]) == 2
