"""``labsim serve --http``: a real server on localhost (uvicorn in a subprocess) whose HTTP
submissions join the same SQLite queue as ``labsim submit``, run there, and whose summaries and
report pages come back; invalid submissions get 422 with the CLI's own message.

Needs the serve extra (``pip install -e 'core[serve]'``); ``.ci/run`` installs it and sets
``LABSIM_REQUIRE_SERVE=1`` so that CI fails rather than skips without it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from labsim.cli import cli

ROOT = Path(__file__).resolve().parents[1]
RATE = "workload.client_profiles[0].request_rate"


def _needs_the_extra():
    if os.environ.get("LABSIM_REQUIRE_SERVE") != "1":
        pytest.importorskip("starlette")
        pytest.importorskip("uvicorn")


def _experiment(folder: Path) -> Path:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["workload"]["total_duration"] = 8
    data["metrics_config"]["warm_up_duration_s"] = 0
    path = folder / "exp.json"
    path.write_text(json.dumps(data))
    return path


class Server:
    """``labsim serve --http 127.0.0.1:0`` in a subprocess; ``url`` once it listens."""

    def __init__(self, folder: Path):
        self.db = folder / "q.sqlite"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labsim", "serve", "--db", str(self.db), "--http", "127.0.0.1:0",
             "--workers", "1", "--data-dir", str(folder)],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        first = self.proc.stdout.readline()          # the address line, printed once bound
        if not first.startswith("labsim serve: http://"):
            self.stop()
            raise AssertionError(first + self.proc.stderr.read())
        self.url = first.split()[2]
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def call(self, method: str, path: str, body: bytes | None = None, **query):
        """``(status, body)`` of one request; *query* values may be lists (repeated)."""
        qs = urllib.parse.urlencode(query, doseq=True)
        request = urllib.request.Request(f"{self.url}{path}{'?' + qs if qs else ''}", data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as ex:
            return ex.code, ex.read()

    def json(self, method: str, path: str, body: bytes | None = None, **query):
        status, data = self.call(method, path, body, **query)
        return status, json.loads(data)

    def wait(self, submission: int, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, entry = self.json("GET", f"/submissions/{submission}")
            assert status == 200, entry
            if entry["finished"]:
                return entry
            time.sleep(0.3)
        raise AssertionError(f"submission {submission} not finished: {entry}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _needs_the_extra()
    folder = tmp_path_factory.mktemp("service")
    srv = Server(folder)
    srv.folder = folder
    srv.exp = _experiment(folder)
    yield srv
    srv.stop()


def _cli(*args, code=0):
    """The result of a labsim command, its stdout and stderr apart (click 8.1 needs asking)."""
    import inspect

    apart = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    result = CliRunner(**apart).invoke(cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_an_http_submission_runs_on_the_queue_and_its_summary_and_report_come_back(server):
    status, entry = server.json("POST", "/submissions", server.exp.read_bytes(), priority="high",
                                grid=f"{RATE}=2,4", source="exp.json")
    assert status == 201, entry
    assert entry["priority"] == "high" and entry["counts"]["queued"] + entry["counts"]["running"] + \
        entry["counts"]["done"] == 2
    done = server.wait(entry["submission"])
    assert done["counts"]["done"] == 2 and done["counts"]["failed"] == 0
    for run in done["runs"]:
        rate = run["point"][0].split("=")[1]
        status, body = server.call("GET", f"/runs/{run['run'][:12]}/summary.json")
        assert status == 200
        served = json.loads(body)
        alone = json.loads(_cli("run", server.exp, "--json", "--set", f"{RATE}={rate}").stdout)
        assert served["frameworks"] == alone["frameworks"]     # the same run as `labsim run` gives
    status, page = server.call("GET", f"/runs/{done['runs'][0]['run']}/report.html")
    assert status == 200 and b"<svg" in page and b"quickstart" in page
    status, runs = server.json("GET", "/runs", state="done")
    assert {r["run"] for r in runs} >= {r["run"] for r in done["runs"]}
    # the same submission again queues nothing: both runs are done
    status, again = server.json("POST", "/submissions", server.exp.read_bytes(), grid=f"{RATE}=2,4")
    assert status == 201 and not any(r["queued_by_this"] for r in again["runs"]) and again["finished"]


def test_cli_submissions_share_the_queue_the_server_runs(server):
    out = _cli("submit", server.exp, "--grid", f"{RATE}=3", "--db", server.db).stdout
    submission = int(out.rsplit("(submission ", 1)[1].rstrip(")\n"))
    done = server.wait(submission)
    assert done["counts"]["done"] == 1 and done["source"] == str(server.exp)
    status, body = server.call("GET", f"/runs/{done['runs'][0]['run']}/summary.json")
    assert status == 200 and json.loads(body)["experiment"] == "quickstart"
    rows = json.loads(_cli("results", server.db, "--format", "json").stdout)
    assert sorted(r[RATE] for r in rows) == ["2", "3", "4"]       # HTTP's and the CLI's, one table


def test_invalid_submissions_get_422_with_the_cli_message(server, monkeypatch):
    monkeypatch.chdir(ROOT)
    broken = "docs/broken.yaml"
    cli_text = _cli("submit", broken, "--db", server.folder / "other.sqlite", code=2).stderr.strip()
    status, body = server.json("POST", "/submissions", (ROOT / broken).read_bytes(), source=broken)
    assert status == 422
    assert f"Error: {body['error']}" == cli_text           # word for word, file:line:column and all
    assert [(p["path"], p["line"]) for p in body["problems"]] == [
        ("frameworks_to_test[0].config.max_num_seqs", 15), ("frameworks_to_test[1].type", 17)]
    status, body = server.json("POST", "/submissions", server.exp.read_bytes(), grid="no-equals-sign")
    assert status == 422 and "--grid 'no-equals-sign': expected key=value1,value2" in body["error"]
    status, body = server.json("POST", "/submissions", server.exp.read_bytes(), priority="urgent")
    assert status == 422 and "allowed: high, normal, background" in body["error"]
    status, body = server.json("POST", "/submissions", b"workload: [1, 2", source="x.yaml")
    assert status == 422 and body["error"].startswith("Invalid experiment (1 problem):\n  x.yaml:1:")
    status, body = server.json("POST", "/submissions", b"name: x\n" + b"#" * (1 << 20))
    assert status == 413 and "1,048,576 allowed" in body["error"]
    status, body = server.json("GET", "/runs/0123456789abcdef")
    assert status == 404 and "no run" in body["error"]
    status, body = server.json("GET", "/runs", state="lost")
    assert status == 422 and "allowed: queued, running, done, failed" in body["error"]


def test_the_server_stops_on_sigterm_and_takes_its_queue_process_with_it(tmp_path):
    _needs_the_extra()
    srv = Server(tmp_path)
    try:
        status, health = srv.json("GET", "/health")
        assert status == 200 and health["queue"] == {"queued": 0, "running": 0, "done": 0, "failed": 0}
        children = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
    finally:
        code = srv.stop()
    assert code == 143
    time.sleep(0.5)
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)


def test_http_without_the_extra_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "q.sqlite"), "--http", "127.0.0.1:0"])
    assert result.exit_code == 2 and "pip install -e 'core[serve]'" in result.output
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "q.sqlite"), "--http", "nowhere", "--once"])
    assert result.exit_code == 2 and "--once and --http" in result.output
