"""Fixtures of labsim-cluster's tests: a throwaway PostgreSQL server for the ``sql`` sink.

``postgres_url`` starts a server of its own (initdb and pg_ctl of Debian's ``postgresql``
package, in a temporary folder, on a free port, listening on a Unix socket only) and stops it
after the tests. Without the server's programs or SQLAlchemy and psycopg it skips, unless
``LABSIM_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it), where it fails. PostgreSQL refuses to run
as root: as root the server runs as the ``postgres`` user (``runuser``). The tests' shared helpers
(``cluster_traces``) import from this folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REQUIRED = os.environ.get("LABSIM_REQUIRE_POSTGRES") == "1"


def _missing(why: str):
    if REQUIRED:
        pytest.fail(f"LABSIM_REQUIRE_POSTGRES=1 but {why}")
    pytest.skip(why)


def _server_bin(name: str) -> str | None:
    """*name* (initdb, pg_ctl) from PATH or Debian's versioned folders, newest first."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name),
                         reverse=True):
        if os.access(Path(folder) / name, os.X_OK):
            return str(Path(folder) / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    try:
        import psycopg  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        _missing("SQLAlchemy and psycopg are not installed (pip install 'labsim-cluster[postgres]')")
    initdb, pg_ctl = _server_bin("initdb"), _server_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _missing("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="labsim-pg-"))
    if os.geteuid() == 0:   # the server refuses root: run it as postgres
        runuser = shutil.which("runuser")
        if not runuser:
            _missing("running as root without runuser to start PostgreSQL as another user")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            _missing("running as root and there is no postgres user to run the server as")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    log = folder / "server.log"

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    done = run(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if done.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"initdb failed: {done.stderr or done.stdout}")
    options = f"-k {folder} -p {port} -c listen_addresses='' -c fsync=off"
    done = run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    if done.returncode:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {done.stderr or done.stdout} {text}")
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={folder}&port={port}"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
