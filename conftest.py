"""Shared by every test folder.

labsim imports structlog on its first log line and applies its logging configuration then
(labsim.log). Tests capture and read those lines (structlog.testing.capture_logs,
capsys), so structlog is imported up front here: every configuration applies at once, as a
program that uses structlog itself sees it.
"""

import structlog  # noqa: F401
