"""Command-line flags with ``MOCKMETRICS_*`` environment fallbacks.

Why both: flags are convenient locally and in tests; environment variables are how a Deployment sets
values without rewriting ``args``. A flag wins over its variable, which wins over the default. A bad value
from either source stops start-up with an argparse error naming the flag or variable and the valid range,
so a typo in a manifest surfaces in the container log on the first line, not as odd behaviour later.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Everything that configures one mockmetrics process."""

    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 4
    max_queue: int = 32
    consume_rate: float = 5.0
    produce_rate: float = 0.0
    dial_step: float = 10.0
    shutdown_timeout: float = 10.0
    drain_delay: float = 0.0
    burn_threads: int = 2
    max_hold_mb: int = 256
    log_level: str = "INFO"

    def describe(self) -> str:
        """``key=value`` pairs for the start-up log line."""
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {value}")
        return value

    return parse


def _float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        problem = f"expected a number from {lo:g} to {hi:g}, got {raw!r}"
        try:
            value = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(problem) from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _host(raw: str) -> str:
    if not raw.strip():
        raise argparse.ArgumentTypeError("expected an address to bind, e.g. 0.0.0.0 or 127.0.0.1")
    return raw.strip()


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return level


# (flag, env var, Settings field, parser, help)
_OPTIONS: tuple[tuple[str, str, str, Callable[[str], Any], str], ...] = (
    ("--host", "MOCKMETRICS_HOST", "host", _host, "address to bind"),
    ("--port", "MOCKMETRICS_PORT", "port", _int_in(0, 65535), "TCP port (0 picks a free one; it is logged)"),
    ("--workers", "MOCKMETRICS_WORKERS", "workers", _int_in(1, 10_000), "worker pool size (total processes)"),
    (
        "--max-queue",
        "MOCKMETRICS_MAX_QUEUE",
        "max_queue",
        _int_in(0, 1_000_000),
        "requests that may wait for a busy pool before /work answers 503",
    ),
    (
        "--consume-rate",
        "MOCKMETRICS_CONSUME_RATE",
        "consume_rate",
        _float_in(0, 1e6),
        "jobs/s this replica consumes from its queue",
    ),
    (
        "--produce-rate",
        "MOCKMETRICS_PRODUCE_RATE",
        "produce_rate",
        _float_in(0, 1e6),
        "jobs/s a steady internal producer adds to this replica's queue",
    ),
    (
        "--dial-step",
        "MOCKMETRICS_DIAL_STEP",
        "dial_step",
        _float_in(0, 1e9),
        "per-second change of total_hit_count while the dial is up or down",
    ),
    (
        "--shutdown-timeout",
        "MOCKMETRICS_SHUTDOWN_TIMEOUT",
        "shutdown_timeout",
        _float_in(0, 3600),
        "seconds to let in-flight requests finish after SIGTERM",
    ),
    (
        "--drain-delay",
        "MOCKMETRICS_DRAIN_DELAY",
        "drain_delay",
        _float_in(0, 3600),
        "seconds between SIGTERM (readyz turns 503) and closing the listener, so endpoints update first",
    ),
    (
        "--burn-threads",
        "MOCKMETRICS_BURN_THREADS",
        "burn_threads",
        _int_in(1, 64),
        "threads that burn CPU for /burn (more requests wait, up to --max-queue, then 503)",
    ),
    (
        "--max-hold-mb",
        "MOCKMETRICS_MAX_HOLD_MB",
        "max_hold_mb",
        _int_in(0, 65536),
        "MiB /hold may keep resident in total (more is refused with 503)",
    ),
    ("--log-level", "MOCKMETRICS_LOG_LEVEL", "log_level", _log_level, f"one of {', '.join(LOG_LEVELS)}"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; defaults are applied after parsing so env fallbacks can be validated."""
    parser = argparse.ArgumentParser(
        prog="mockmetrics",
        description="HTTP app whose Prometheus metrics respond to real load (hpa-kit test workload).",
        epilog="Every flag falls back to the environment variable shown, then to the default.",
    )
    defaults = Settings()
    for flag, env, field, parse, help_text in _OPTIONS:
        parser.add_argument(
            flag,
            dest=field,
            type=parse,
            default=None,
            metavar=field.upper(),
            help=f"{help_text} (env {env}, default {getattr(defaults, field)})",
        )
    return parser


def parse_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags, fall back to ``MOCKMETRICS_*`` variables, then defaults. Exits 2 on bad input."""
    env = os.environ if environ is None else environ
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for _flag, var, field, parse, _help in _OPTIONS:
        value = getattr(args, field)
        if value is None and env.get(var, "") != "":
            try:
                value = parse(env[var])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {var}={env[var]!r}: {exc}")
        if value is not None:
            values[field] = value
    return Settings(**values)


def configure_logging(level: str) -> None:
    """One format for every logger, on stderr, so container logs are uniform."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
