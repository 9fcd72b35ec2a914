"""The answer formats of ``POST /query`` (README "SQL introspection"): JSON rows, CSV, or an
Arrow IPC stream, chosen by the ``Accept`` header or the body's ``"format"``.

Arrow is built from the engine's own columns (typed: integers, strings, timestamps and nulls
stay what they are), after the fan-out: the peers send raw table rows, the query runs here once
over the merged tables, so one node's Arrow stream holds every partition's rows.
"""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


FORMATS = ("json", "csv", "arrow")
ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
# CSV and Arrow have no place for it in the body: the header says the rows were cut.
TRUNCATED_HEADER = "x-cairn-truncated"
_MEDIA_TYPES = {"application/json": "json", "text/csv": "csv", ARROW_MEDIA_TYPE: "arrow"}


class UnknownFormat(ValueError):
    """A ``"format"`` that is not one of ``FORMATS``."""


def negotiate(accept: str, requested: str | None) -> str:
    """The answer's format: the ``Accept`` header when it names one of ours (it wins over the
    body), else the body's ``format``, else JSON."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _MEDIA_TYPES:
            return _MEDIA_TYPES[media]
    if requested is None:
        return "json"
    if requested not in FORMATS:
        raise UnknownFormat(f"format must be one of {', '.join(FORMATS)}, got {requested!r}")
    return requested


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """A header line, then one line per row (JSON values as JSON text)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()])
    return out.getvalue()


def fetch_arrow(con: duckdb.DuckDBPyConnection, query: str, max_rows: int) -> tuple[pa.Table, bool]:
    """Up to ``max_rows`` rows of the query's result as an Arrow table, and whether more were
    left off. Read batch by batch from a relation (``con.sql``), which streams its result: a
    large result is never held whole (an ``execute`` result would first copy every row)."""
    import pyarrow as pa  # imported on use: see runtime/admin/sql.py

    reader = con.sql(query).to_arrow_reader(min(max_rows + 1, 10_000))
    batches: list[pa.RecordBatch] = []
    kept = 0
    truncated = False
    for batch in reader:
        if kept + batch.num_rows > max_rows:
            batches.append(batch.slice(0, max_rows - kept))
            truncated = True
            break
        batches.append(batch)
        kept += batch.num_rows
    return pa.Table.from_batches(batches, schema=reader.schema), truncated


def arrow_stream(table: pa.Table) -> bytes:
    """The table as an Arrow IPC stream (``pyarrow.ipc.open_stream`` reads it back)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
