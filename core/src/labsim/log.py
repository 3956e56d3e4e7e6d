"""structlog set-up: readable console lines by default, JSON lines with ``--log-format json``.

Logs go to stderr so that stdout stays clean for tables and JSON output. Used as a
library (``labsim.run``), labsim logs warnings and errors only, to stderr, unless the
program configured structlog itself first (:func:`configure_default`).
"""

from __future__ import annotations

import logging
import sys

import structlog


def _stderr_logger(*_args) -> structlog.PrintLogger:
    """A logger on whatever ``sys.stderr`` is when a line is logged (not when configured: a
    test runner or ``click.testing.CliRunner`` may have swapped it in the meantime)."""
    return structlog.PrintLogger(file=sys.stderr)


def configure(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog for the command line."""
    renderer = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def configure_default() -> None:
    """Quiet library defaults — warnings and errors to stderr — unless structlog is already
    configured (structlog's own default prints every level to stdout)."""
    if not structlog.is_configured():
        configure("console", "warning")
