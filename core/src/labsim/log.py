"""structlog set-up: readable console lines by default, JSON lines with ``--log-format json``.

Logs go to stderr so that stdout stays clean for tables and JSON output. Used as a
library (``labsim.run``), labsim logs warnings and errors only, to stderr, unless the
program configured structlog itself first (:func:`configure_default`).

structlog (with the asyncio it pulls in) takes ~0.1 s to import, a sixth of a
``labsim run``'s start-up, and a clean run logs nothing. So labsim's own loggers
(:func:`get_logger`) import it on their first line, and a configuration asked
for before then is applied at that moment::

    from labsim.log import get_logger

    log = get_logger("my_plugin")
    log.warning("something_odd", field="x")     # structlog is imported here, configured
"""

from __future__ import annotations

import logging
import sys

#: a configuration asked for before structlog was imported: (format, level, only if unconfigured)
_pending: tuple[str, str, bool] | None = None


def _stderr_logger(*_args):
    """A logger on whatever ``sys.stderr`` is when a line is logged (not when configured: a
    test runner or ``click.testing.CliRunner`` may have swapped it in the meantime)."""
    import structlog

    return structlog.PrintLogger(file=sys.stderr)


def _apply(log_format: str, level: str) -> None:
    import structlog

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


def settle() -> None:
    """Apply a configuration put off until structlog's import, if structlog is imported now
    (labsim's first log line, or a plugin that imported it)."""
    global _pending
    if _pending is None or "structlog" not in sys.modules:
        return
    log_format, level, only_if_unconfigured = _pending
    _pending = None
    import structlog

    if not (only_if_unconfigured and structlog.is_configured()):
        _apply(log_format, level)


def configure(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog for the command line (at once if it is imported, else when it is)."""
    global _pending
    _pending = (log_format, level, False)
    settle()


def configure_default() -> None:
    """Quiet library defaults — warnings and errors to stderr — unless structlog is already
    configured (structlog's own default prints every level to stdout)."""
    global _pending
    if _pending is None:
        _pending = ("console", "warning", True)
    settle()


class _Logger:
    """structlog's logger *name*, imported and configured on its first use."""

    def __init__(self, name: str):
        self._name = name
        self._logger = None

    def __getattr__(self, attr: str):
        logger = self._logger
        if logger is None:
            if _below_threshold(attr):
                return _drop                     # filtered out anyway: no need for structlog
            import structlog

            settle()
            logger = self._logger = structlog.get_logger(self._name)
        return getattr(logger, attr)


def _below_threshold(method: str) -> bool:
    """Whether a line logged with *method* is sure to be filtered out: structlog is not
    imported yet and the configuration waiting for it drops that level. (That includes the
    library default, which applies only if nobody configured structlog: nobody can have
    before it is imported, so importing it now would apply the default.)"""
    if "structlog" in sys.modules or _pending is None:
        return False
    levels = logging.getLevelNamesMapping()
    wanted = levels.get(method.upper())
    return wanted is not None and wanted < levels[_pending[1].upper()]


def _drop(*_args, **_kwargs) -> None:
    return None


def get_logger(name: str) -> _Logger:
    """The logger *name* (a structlog bound logger, imported on its first line)."""
    return _Logger(name)
