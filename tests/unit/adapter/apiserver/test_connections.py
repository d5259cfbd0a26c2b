"""The pure parts of the connection limits: request framing (head and body sizes) and the flags."""

from __future__ import annotations

import pytest

from adapter.apiserver.connections import ConnectionLimits, Framing
from adapter.cli import UsageError, build_parser, validate_serve

GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _feed_bytewise(f: Framing, data: bytes) -> tuple[int, str] | None:
    for i in range(len(data)):
        error = f.feed(data[i : i + 1])
        if error:
            return error
    return None


def test_heads_counted_whole_split_and_pipelined() -> None:
    f = Framing(1024, 0)
    assert f.feed(GET) is None and f.heads == 1 and not f.in_head
    assert _feed_bytewise(f, GET) is None and f.heads == 2
    assert f.feed(GET * 3) is None and f.heads == 5
    assert f.feed(GET[:10]) is None and f.in_head
    assert f.feed(GET[10:] + b"\r\n" + GET) is None and f.heads == 7 and not f.in_head


def test_head_limit_counts_the_whole_head() -> None:
    f = Framing(100, 0)
    assert f.feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20) == (431, "Request Header Fields Too Large")
    assert _feed_bytewise(Framing(100, 0), b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20) is not None
    exact = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 12 + b"\r\n"
    assert len(exact) <= 100 and Framing(100, 0).feed(exact) is None


def test_bodies_skipped_and_limited() -> None:
    f = Framing(1024, 10)
    body = b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\n" + b"\r\n\r\n\r\n\r\n\r\n"
    assert f.feed(body + GET) is None and f.heads == 2 and not f.in_head
    assert Framing(1024, 10).feed(b"GET / HTTP/1.1\r\ncontent-length: 11\r\n\r\n")[0] == 413  # type: ignore[index]
    assert Framing(1024, 10).feed(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")[0] == 411  # type: ignore[index]
    assert Framing(1024, 10).feed(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")[0] == 400  # type: ignore[index]


def test_flag_defaults_match_the_limits() -> None:
    args = build_parser().parse_args(["serve"])
    d = ConnectionLimits()
    assert (args.max_connections, args.tls_handshake_timeout, args.request_header_timeout) == (
        d.max_connections,
        d.tls_handshake_timeout,
        d.request_header_timeout,
    )
    assert (args.idle_timeout, args.max_request_header_bytes, args.max_request_body_bytes) == (
        d.idle_timeout,
        d.max_header_bytes,
        d.max_body_bytes,
    )
    assert d.max_connections == 500 and d.idle_timeout == 90


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-connections", "-1"], "--max-connections"),
        (["--request-header-timeout", "0"], "--request-header-timeout"),
        (["--max-request-header-bytes", "100"], "--max-request-header-bytes"),
    ],
)
def test_bad_limit_flags(tmp_path, extra: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    cert, key = tmp_path / "c", tmp_path / "k"
    cert.write_text("x")
    key.write_text("x")
    args = build_parser().parse_args(
        [
            "serve",
            "--tls-cert-file",
            str(cert),
            "--tls-private-key-file",
            str(key),
            "--provider",
            "static",
            *extra,
        ]
    )
    with pytest.raises(UsageError, match=message):
        validate_serve(args)
