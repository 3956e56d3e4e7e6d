"""The CSV sink's lines: the one-format-per-row shortcut writes, byte for byte, what the csv
module writes for :func:`format_row`'s cells."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.default_plugins.sinks import CsvSink, LineFormat, format_row

CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6),
    st.text(), st.sampled_from(["vllm", "", "a,b", 'say "x"', "l1\nl2", "cr\r", "50%", "%s%d"]),
    st.builds(np.float64, st.floats(-1e3, 1e3)), st.builds(np.int64, st.integers(-9, 9)))


def csv_module_lines(rows) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([format_row(r) for r in rows])
    return out.getvalue()


def sink_lines(tmp_path, rows, batched: bool) -> str:
    sink = CsvSink(tmp_path)
    table = sink.open_table("t", [f"c{i}" for i in range(len(rows[0]))])
    if batched:
        table.extend(rows)
    else:
        for row in rows:
            table.append(row)
    (path,) = sink.close(True)
    return path.read_text(encoding="utf-8").split("\n", 1)[1]


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.lists(CELLS, min_size=n, max_size=n),
                                                    min_size=1, max_size=8)))
def test_line_format_writes_the_csv_modules_line(rows):
    for row in rows:
        fmt = LineFormat.of(tuple(map(type, row)))
        line = fmt.line(row) if fmt is not None else None
        if line is not None:
            assert line == csv_module_lines([row])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["vllm", "a,b"]),
                          st.one_of(st.none(), st.integers()),
                          st.floats(allow_nan=True), st.floats(0, 1e4)), min_size=1, max_size=20),
       st.booleans())
def test_sink_file_equals_csv_module(tmp_path_factory, rows, batched):
    rows = [list(r) for r in rows]
    assert sink_lines(tmp_path_factory.mktemp("csv"), rows, batched) == csv_module_lines(rows)


def test_requests_row_takes_the_shortcut_and_odd_rows_do_not():
    row = [7, "vllm", 0, "finished", None, "fixed", None, 0, 0.125, 0.25, 0.5, 1.0 / 3.0,
           1024, 256, 0, 0, 375.0, 2.1, 2.1, 875.0]
    fmt = LineFormat.of(tuple(map(type, row)))
    assert fmt.line(row) == csv_module_lines([row])
    assert fmt.line([*row[:16], float("nan"), *row[17:]]) is None      # NaN: the csv module's way
    assert fmt.line([7, "a,b", *row[2:]]) is None                        # a quoted text
    assert LineFormat.of((int,)) is None                                 # a lone cell
    assert LineFormat.of((int, bool)) is None and LineFormat.of((np.float64, int)) is None


def chunked_lines(tmp_path, rows, chunk_rows: int, batched: bool) -> str:
    from labsim.default_plugins.sinks import _CsvWriter

    writer = _CsvWriter(tmp_path / "t.csv", [f"c{i}" for i in range(len(rows[0]))], chunk_rows)
    if batched:
        writer.extend(rows)
    else:
        for row in rows:
            writer.append(row)
    return writer.finish(True).read_bytes().decode("utf-8").split("\n", 1)[1]   # "\r" kept


ROW_CELLS = st.tuples(st.integers(0, 10**12), st.sampled_from(["vllm", "a,b", "nan", "l1\nl2", "q\"", "cr\r", ""]),
                      st.one_of(st.none(), st.integers(), st.booleans()),
                      st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 3)),
                      st.floats(0, 1e4))


@settings(max_examples=200, deadline=None)
@given(st.lists(ROW_CELLS, min_size=1, max_size=40), st.integers(1, 9), st.booleans())
def test_buffered_rows_make_the_file_of_one_row_at_a_time(tmp_path_factory, rows, chunk_rows, batched):
    """Rows formatted a buffer at a time (NaNs, quoted texts, line breaks and cells of other
    types among them, in buffers of any size) give the csv module's lines, byte for byte."""
    rows = [list(r) for r in rows]
    text = chunked_lines(tmp_path_factory.mktemp("csv"), rows, chunk_rows, batched)
    assert text == csv_module_lines(rows)


def test_a_long_table_is_written_in_chunks_with_memory_bounded(tmp_path):
    """A table of 10,000 rows holds at most one chunk in memory and writes the same file
    whatever the chunk (1, 7, 4096 rows), with a NaN row and a quoted row among them."""
    from labsim.default_plugins.sinks import _CsvWriter

    rows = [(i, "vllm", 0.5 + i / 3.0, float("nan") if i == 5000 else 1.0 / (i + 1), 2 * i)
            for i in range(10_000)]
    rows[7777] = (7777, "a,b", 1.0, 2.0, 3)
    texts = set()
    for chunk in (1, 7, 4096):
        writer = _CsvWriter(tmp_path / f"t{chunk}.csv", ["a", "b", "c", "d", "e"], chunk)
        for row in rows:
            writer.append(row)
            assert len(writer._rows) < chunk
        texts.add(writer.finish(True).read_text(encoding="utf-8"))
    (text,) = texts
    assert text.split("\n", 1)[1] == csv_module_lines(rows)


def test_rows_wait_in_the_buffer_until_the_file_is_staged(tmp_path):
    """Buffered rows reach the temporary file when the sink stages it (the orchestrator's
    atomic set of renames) and vanish with it when the run fails."""
    sink = CsvSink(tmp_path)
    table = sink.open_table("t", ["a", "b"])
    table.append((1, 0.5))
    ((temp, dest),) = sink.prepare()
    assert temp.read_text(encoding="utf-8") == "a,b\n1,0.5\n" and not dest.exists()
    failed = CsvSink(tmp_path / "failed")
    failed.open_table("t", ["a", "b"]).append((1, 0.5))
    failed.discard()
    assert not list((tmp_path / "failed").glob("*"))
