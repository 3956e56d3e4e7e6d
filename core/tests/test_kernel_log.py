"""labsim's loggers: structlog imported only when a line may be written."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import sys
import labsim                                   # (sets the library default: warnings and up)
from labsim.log import get_logger

log = get_logger("probe")
log.debug("quiet")
log.info("quiet")
print("structlog" in sys.modules, flush=True)
log.warning("loud", field="x")
print("structlog" in sys.modules, flush=True)
log.info("still quiet")
"""


def test_library_lines_below_warnings_do_not_import_structlog():
    """Used as a library, labsim drops debug and info lines without importing structlog (a
    tenth of a second), as structlog configured with the default would; a warning imports it,
    configures the default and is written to stderr, and info lines stay dropped."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    assert "loud" in out.stderr and "field=x" in out.stderr
    assert "quiet" not in out.stderr


def test_a_program_that_configured_structlog_gets_every_line():
    """A program that configured structlog before its first labsim line keeps its own set-up
    (levels included): the library default does not apply."""
    script = """
import structlog, logging
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                    logger_factory=structlog.PrintLoggerFactory())
import labsim
from labsim.log import get_logger
get_logger("probe").info("wanted")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "wanted" in out.stdout
