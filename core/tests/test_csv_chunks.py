"""The CSV sink's chunks formatted a column at a time (:mod:`labsim.default_plugins.csv_chunks`)
write, byte for byte, what the csv module writes for :func:`format_row`'s cells, one row at a
time: floats over their whole range (rounding ties, powers of ten, NaN, infinities, -0.0,
subnormals), ints of any size, None, texts the csv module quotes, cells of other types."""

from __future__ import annotations

import csv
import io
import math
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labsim.default_plugins import csv_chunks, sinks
from labsim.default_plugins.csv_chunks import chunk_text
from labsim.default_plugins.sinks import _CsvWriter, format_row


def csv_module_lines(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(format_row(row))
    return out.getvalue()


def near(value: float, steps: int) -> float:
    """*value* moved by *steps* doubles."""
    for _ in range(abs(steps)):
        value = math.nextafter(value, math.inf if steps > 0 else -math.inf)
    return value


#: floats at the edges of the fixed notation and of 9-digit rounding
EDGE_FLOATS = [
    0.0, -0.0, 1e-4, 0.0001, 0.00009999999999, 0.000099999999996, 0.00009999999994, 1e-5,
    9.9999999995, 9.9999999996, 9.9999999994, 999999999.5, 999999999.4, 999999999.7, 1e9,
    99999999.95, 0.1234567895, 1.234567895, 12345678.25, 12345678.75, 1234.5678901, 35.123456,
    0.5, 1 / 3, 2 / 3, 100.0, 123456789.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    math.inf, -math.inf, math.nan, -1.5, -0.00012345, -999999999.4, 6000.0, 0.1, 0.2, 0.3,
] + [near(10.0 ** k, s) for k in range(-6, 11) for s in (-2, -1, 0, 1, 2)] \
  + [near(m * 10.0 ** k, s) for k in range(-13, 1) for m in (1000000005, 9999999995, 1234567895)
     for s in (-1, 0, 1)]

EDGE_INTS = [0, 1, -1, 9, 10, 99, 100, 9999, 10000, 123456789, -123456789, 10 ** 15 - 1, 10 ** 15,
             -(10 ** 15), 2 ** 53, 2 ** 53 + 1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, 2 ** 64, -(2 ** 70),
             10 ** 400]

EDGE_TEXTS = ["", "vllm", "finished", "a,b", 'say "x"', "l1\nl2", "cr\r", "\r\n", "50%", "é", "ÿ",
              "日本", "\x00", "tab\t", " lead", "nan", '"', ","]

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 6000), st.floats(1e-6, 1e10),
    st.sampled_from(EDGE_FLOATS),
    st.builds(lambda m, e: m * 10.0 ** e, st.integers(10 ** 8, 10 ** 10), st.integers(-16, 1)),
    st.builds(lambda m, e: (m + 0.5) / 10.0 ** e, st.integers(0, 10 ** 9), st.integers(0, 12)))
INTS = st.one_of(st.integers(), st.integers(-10, 10), st.integers(0, 10 ** 6),
                 st.sampled_from(EDGE_INTS[:-1]))
TEXTS = st.one_of(st.text(st.characters(blacklist_categories=("Cs",))), st.sampled_from(EDGE_TEXTS))
OTHERS = st.one_of(st.booleans(), st.builds(np.float64, st.floats(-1e3, 1e3)),
                   st.builds(np.int64, st.integers(-9, 9)), FLOATS, INTS, TEXTS)


def column_of(kind):
    """Cells of a column of one kind (float, int, text, anything), None among them or not."""
    cells = {"float": FLOATS, "int": INTS, "text": TEXTS, "other": OTHERS}[kind]
    return st.one_of(cells, st.none()) if kind != "other" else cells


@st.composite
def chunks(draw, min_rows=1, max_rows=40):
    """Rows whose columns each hold one kind of cell (so that they are formatted together)."""
    kinds = draw(st.lists(st.sampled_from(["float", "int", "text", "other"]), min_size=2, max_size=7))
    with_none = [draw(st.booleans()) for _ in kinds]
    strategies = [column_of(k) if none else column_of(k).filter(lambda v: v is not None)
                  for k, none in zip(kinds, with_none)]
    rows = draw(st.lists(st.tuples(*strategies), min_size=min_rows, max_size=max_rows))
    return [list(r) for r in rows]


@settings(max_examples=400, deadline=None)
@given(chunks())
def test_chunk_text_is_the_csv_modules_text(rows):
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


@settings(max_examples=100, deadline=None)
@given(chunks(max_rows=25), st.integers(1, 6))
def test_rows_formatted_in_slices_make_the_same_text(rows, slice_rows):
    with mock.patch.object(csv_chunks, "SLICE_ROWS", slice_rows):
        assert chunk_text(rows, format_row) == csv_module_lines(rows)


@settings(max_examples=100, deadline=None)
@given(chunks(max_rows=30), st.integers(1, 12), st.booleans())
def test_the_writers_file_is_the_csv_modules_file(tmp_path_factory, rows, chunk_rows, batched):
    """Through the CSV sink's writer (column at a time from one row on), buffers of any size."""
    writer = _CsvWriter(tmp_path_factory.mktemp("csv") / "t.csv", [f"c{i}" for i in range(len(rows[0]))],
                        chunk_rows)
    with mock.patch.object(sinks, "VECTOR_ROWS", 1):
        if batched:
            writer.extend(rows)
        else:
            for row in rows:
                writer.append(row)
        text = writer.finish(True).read_bytes().decode("utf-8")
    assert text.split("\n", 1)[1] == csv_module_lines(rows)


@pytest.mark.parametrize("value", EDGE_FLOATS)
def test_each_edge_float_as_percent_9g(value):
    rows = [[value, 1], [-value, None], [value, "x"]]
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


def test_rounding_edges_written_as_percent_9g():
    cells = [9.9999999996, 9.999999994, 0.0001, 0.00009999999999, 0.00009999999, 1e-4, 999999999.4,
             999999999.5, 12345678.25, 0.0, -0.0, math.nan, math.inf, 5e-324, 123456789.0, 0.5]
    text = chunk_text([[v, 0] for v in cells], format_row)
    assert text.splitlines() == [
        "10,0", "9.99999999,0", "0.0001,0", "0.0001,0", "9.999999e-05,0", "0.0001,0", "999999999,0",
        "1e+09,0", "12345678.2,0", "0,0", "-0,0", ",0", "inf,0", "4.94065646e-324,0", "123456789,0", "0.5,0"]


def test_many_floats_in_each_decade():
    """Log-uniform floats, decimal numbers with 9 to 12 digits, and halves between 9-digit
    numbers (rounding ties and near-ties), as a few large chunks."""
    rng = np.random.default_rng(7)
    values = np.concatenate([
        10.0 ** rng.uniform(-6, 10, 60_000),
        rng.integers(10 ** 8, 10 ** 12, 30_000) / 10.0 ** rng.integers(0, 16, 30_000),
        (rng.integers(10 ** 8, 10 ** 9, 30_000) + 0.5) / 10.0 ** rng.integers(-1, 14, 30_000),
    ])
    values[::7] *= -1
    rows = [[v, i] for i, v in enumerate(values.tolist())]
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


@pytest.mark.parametrize("value", EDGE_INTS)
def test_each_edge_int_by_its_digits(value):
    rows = [[value, 0.5], [-value, None], [None, 1.0], [value, 2.0]]
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


def test_texts_quoted_as_the_csv_module_quotes_them():
    rows = [[t, None, t] for t in EDGE_TEXTS] + [[None, None, ""]]
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


def test_columns_of_other_types_and_mixed_types():
    rows = [[True, np.float64(0.1), np.int64(-3), 1, 2.5, "a"],
            [False, np.float64(1e20), np.int64(7), 2.0, None, 3],
            [None, np.float64("nan"), np.int64(0), None, 1, None]]
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


def test_requests_rows():
    """Rows of requests.csv: finished, rejected and unfinished requests."""
    rows = []
    for i in range(300):
        arrival = i * 19.8761234567
        status = ("finished", "rejected", "unfinished")[i % 3]
        first = math.nan if status == "rejected" else arrival + 0.0123456789 * (i % 17 + 1)
        finish = first + 3.21 * (i % 5) if status == "finished" else math.nan
        rows.append([i, "vllm", i % 4, status, "kv_capacity" if status == "rejected" else None, "chat",
                     -1 if i % 2 else i // 2, i % 3, arrival, first, first, finish, 1000 + i, 7 * i,
                     0, i % 2, (first - arrival) * 1e3, 8.63075068, 8.63075068, (finish - arrival) * 1e3])
    assert chunk_text(rows, format_row) == csv_module_lines(rows)


def test_what_it_does_not_write():
    """Rows of other lengths, a lone cell and a text UTF-8 cannot encode are left to the caller."""
    assert chunk_text([[1, 2.5], [1]], format_row) is None
    assert chunk_text([[1.5], [2.5]], format_row) is None
    assert chunk_text([["\ud800", 1], ["a", 2]], format_row) is None


def test_a_large_buffer_is_written_a_column_at_a_time(tmp_path):
    """The writer's buffers of VECTOR_ROWS rows or more take the column path, and its file is
    the csv module's file."""
    rows = [(i, "vllm", 0.5 + i / 3.0, math.nan if i % 50 == 0 else 1.0 / (i + 1), -i, None)
            for i in range(3 * sinks.VECTOR_ROWS)]
    writer = _CsvWriter(tmp_path / "t.csv", ["a", "b", "c", "d", "e", "f"], 2 * sinks.VECTOR_ROWS)
    with mock.patch.object(sinks, "chunk_text", wraps=chunk_text) as spy:
        for row in rows:
            writer.append(row)
        text = writer.finish(True).read_text(encoding="utf-8")
    assert spy.call_count == 2 and all(len(call.args[0]) >= sinks.VECTOR_ROWS for call in spy.call_args_list)
    assert text.split("\n", 1)[1] == csv_module_lines(rows)
