"""The shared simulation service: ``labsim serve --http HOST:PORT``, an HTTP API over the queue.

    labsim serve --db queue.sqlite --http 127.0.0.1:8000        # needs labsim[serve]
    curl --data-binary @examples/quickstart.yaml 'http://127.0.0.1:8000/submissions?priority=high'

Submissions land in the same SQLite queue as ``labsim submit``'s (:class:`labsim.queue.Queue`),
and the same server process runs it (:func:`labsim.queue.serve`, in a child process) while this
app answers. Routes (every answer is JSON except the report page):

* ``POST /submissions`` — the body is an experiment (YAML or JSON); query parameters ``grid``
  (repeat for a cartesian product, as ``--grid``), ``set`` (as ``--set``), ``seed``,
  ``priority`` (high | normal | background) and ``source`` (the name messages give the document).
  201 with the submission and its runs; 422 with the message ``labsim submit`` prints for the
  same document (``error``, and ``problems``: each field, line and what is allowed); 413 over
  1 MiB.
* ``GET /submissions``, ``GET /submissions/{id}`` — submissions, the state of each run and
  ``finished`` once none is queued or running.
* ``GET /runs[?state=…]``, ``GET /runs/{run}`` — runs by key (or a unique prefix of 8+ characters).
* ``GET /runs/{run}/summary.json`` — the run's summary; ``GET /runs/{run}/report.html`` — its
  ``labsim report`` page, drawn once from its outputs folder (needs labsim-report).
* ``GET /health`` — labsim's version and the queue's counts.

Relative paths in a submitted experiment (traces, a model database) resolve in the server's
``--data-dir``: the body travels, the files it names do not.
"""

from __future__ import annotations

import json
import threading
from importlib import metadata
from pathlib import Path

from labsim.errors import ConfigError, LabsimError, UsageError


class TooLarge(UsageError):
    """A submission over the size an experiment file may have (HTTP 413)."""


def require() -> None:
    """Raise a :class:`UsageError` naming the extra when Starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError("--http needs the serve extra: pip install -e 'core[serve]' in a labsim "
                         "checkout (Starlette and uvicorn)") from None


def error_body(ex: LabsimError) -> dict:
    """The JSON of a refused submission: the CLI's message, and each problem located."""
    body: dict = {"error": str(ex)}
    if isinstance(ex, ConfigError):
        body["problems"] = [{"path": p.path, "message": p.message, "source": p.source, "line": p.line,
                             "column": p.column} for p in ex.problems]
    return body


def parse_submission(text_bytes: bytes, params, data_dir: Path):
    """``(experiment, grid, overrides, seed, priority)`` of a request: its body and query.

    :raises LabsimError: with the message ``labsim submit`` gives the same document.
    """
    from labsim import config as config_mod

    source = params.get("source") or "<request>"
    limit = config_mod.MAX_FILE_BYTES
    if len(text_bytes) > limit:
        raise TooLarge(f"cannot read experiment {source}: {len(text_bytes):,} bytes is more than the "
                         f"{limit:,} allowed; put bulk data (samples, traces) in a CSV file it names")
    if b"\0" in text_bytes:
        raise UsageError(f"cannot read experiment {source}: it is binary, not text")
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError as ex:
        line = text_bytes[: ex.start].count(b"\n") + 1
        raise UsageError(f"cannot read experiment {source}: line {line} is not UTF-8 text "
                         f"(byte {text_bytes[ex.start]:#04x}); send it as UTF-8") from None
    if not text.strip():
        raise UsageError("the request has no body: send the experiment (YAML or JSON) as the body")
    experiment = config_mod.loads(text, source, data_dir)
    seed = params.get("seed")
    if seed is not None:
        try:
            seed = int(seed)
        except ValueError:
            raise UsageError(f"seed {seed!r}: allowed: an integer from 0 to 2**63 - 1") from None
    priority = params.get("priority") or "normal"
    return experiment, params.getlist("grid"), params.getlist("set"), seed, priority


def create_app(db_path: Path, data_dir: Path | None = None, outputs: Path | None = None):
    """The Starlette app of the queue *db_path*; runs' outputs folders are under *outputs*."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from labsim.queue import STATES, Queue

    db_path, data_dir = Path(db_path), Path(data_dir or Path.cwd())
    Queue(db_path, outputs).close()          # the file and its tables exist before the first request
    report_lock = threading.Lock()           # matplotlib draws one page at a time

    def queue() -> Queue:                    # one connection per request (handlers run in threads)
        return Queue(db_path, outputs)

    def answer(data, status: int = 200, headers=None) -> Response:
        return JSONResponse(data, status_code=status, headers=headers)

    def refused(ex: LabsimError, status: int = 422) -> Response:
        return answer(error_body(ex), status)

    def missing(what: str) -> Response:
        return answer({"error": what}, 404)

    def with_run(request, fn):
        q = queue()
        try:
            ident = request.path_params["run"]
            key = ident if len(ident) == 64 else q.find(ident)
            found = q.runs([key]) if key else []
            if not found:
                return missing(f"no run {ident!r} in {db_path.name} (a run is named by its key, "
                               "or a unique prefix of 8 or more of its characters)")
            return fn(q, found[0])
        finally:
            q.close()

    async def submit(request):
        from starlette.concurrency import run_in_threadpool

        body = await request.body()

        def enqueue():           # validating every point of a grid takes a while: not on the loop
            experiment, grid, fixed, seed, priority = parse_submission(body, request.query_params, data_dir)
            q = queue()
            try:
                done = q.submit(experiment, grid, fixed, seed, priority, base_dir=data_dir)
                return q.submission(done.id)
            finally:
                q.close()

        try:
            entry = await run_in_threadpool(enqueue)
        except LabsimError as ex:
            return refused(ex, 413 if isinstance(ex, TooLarge) else 422)
        return answer(entry, 201, {"Location": f"/submissions/{entry['submission']}"})

    def submissions(request):
        q = queue()
        try:
            return answer(q.submissions())
        finally:
            q.close()

    def submission(request):
        q = queue()
        try:
            entry = q.submission(request.path_params["id"])
        finally:
            q.close()
        return answer(entry) if entry else missing(f"no submission {request.path_params['id']}")

    def runs(request):
        state = request.query_params.get("state")
        if state is not None and state not in STATES:
            return refused(UsageError(f"state {state!r}: allowed: {', '.join(STATES)}"))
        q = queue()
        try:
            found = q.runs()
        finally:
            q.close()
        return answer([r for r in found if state is None or r["state"] == state])

    def run(request):
        return with_run(request, lambda q, r: answer(r))

    def summary(request):
        def fn(q, r):
            data = q.summary(r["run"])
            if data is None:
                why = r["error"] if r["state"] == "failed" else f"it is {r['state']}"
                return missing(f"run {r['run']} has no summary: {why}")
            return Response(json.dumps(data, indent=2) + "\n", media_type="application/json")

        return with_run(request, fn)

    def report(request):
        def fn(q, r):
            folder = None if outputs is None else Path(outputs) / r["run"]
            if folder is None or not (folder / "summary.json").is_file():
                why = (f"it is {r['state']}" if r["state"] != "done" else
                       "it kept no outputs (it ran under `labsim serve` without --outputs)")
                return missing(f"run {r['run']} has no report: {why}")
            page = folder / "report.html"
            if not page.is_file():
                from labsim.cli import cli

                command = cli.commands.get("report")
                if command is None:
                    return missing("reports need the labsim-report plugin (pip install -e plugins/report "
                                   "in a labsim checkout)")
                with report_lock:
                    if not page.is_file():
                        command.callback(path=str(folder), out=None, slo=None)
            return HTMLResponse(page.read_text(encoding="utf-8"))

        return with_run(request, fn)

    def health(request):
        q = queue()
        try:
            counts = q.counts()
        finally:
            q.close()
        return answer({"labsim": metadata.version("labsim"), "queue": {s: counts.get(s, 0) for s in STATES}})

    return Starlette(routes=[
        Route("/health", health),
        Route("/submissions", submit, methods=["POST"]),
        Route("/submissions", submissions),
        Route("/submissions/{id:int}", submission),
        Route("/runs", runs),
        Route("/runs/{run}", run),
        Route("/runs/{run}/summary.json", summary),
        Route("/runs/{run}/report.html", report),
    ])


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free one) → ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http {text!r}: allowed: HOST:PORT, e.g. 127.0.0.1:8000 (port 0: any free port)")
    return host.strip("[]"), int(port)


def _run_queue(db_path, workers, timeout_s, memory_mb, outputs, parent) -> None:
    """The child process that runs the queue while the parent answers HTTP."""
    import signal
    import sys

    from labsim.queue import serve
    from labsim.sweep import _watch_parent

    _watch_parent(parent)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)

    def report(point, status, error):
        label = " ".join(point) or "(base)"
        print(f"{status:5}  {label}" + (f"  {error.splitlines()[0]}" if error else ""), flush=True)

    try:
        serve(Path(db_path), workers, False, timeout_s, memory_mb, on_result=report, outputs=outputs)
    except KeyboardInterrupt:
        sys.exit(0)


def run_server(db_path: Path, address: str, workers: int, timeout_s=None, memory_mb=None,
               outputs: Path | None = None, data_dir: Path | None = None, announce=print) -> None:
    """Serve HTTP on *address* while a child process runs the queue; until Ctrl-C or SIGTERM.

    The socket listens before anything else, so ``announce`` can name the real port (port 0
    picks a free one) and a client may connect as soon as it reads it. Stopping the server stops the runs in progress; the next server runs
    them again (:meth:`labsim.queue.Queue.recover`).
    """
    import multiprocessing as mp
    import os
    import socket

    require()
    import uvicorn

    host, port = parse_address(address)
    app = create_app(db_path, data_dir, outputs)
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)           # connections wait in the backlog until uvicorn answers them
    except OSError as ex:
        raise UsageError(f"--http {address}: cannot listen there ({ex.strerror or ex})") from None
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    runner = ctx.Process(target=_run_queue, name="labsim-queue",
                         args=(str(db_path), workers, timeout_s, memory_mb, outputs, os.getpid()))
    runner.start()
    bound = sock.getsockname()
    announce(f"labsim serve: http://{host if ':' not in host else f'[{host}]'}:{bound[1]} "
             f"(queue {db_path}, outputs {outputs})")
    try:
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        server.run(sockets=[sock])
    finally:
        runner.terminate()
        runner.join(10)
        if runner.is_alive():
            runner.kill()
        sock.close()


__all__ = ["create_app", "parse_address", "parse_submission", "require", "run_server"]
