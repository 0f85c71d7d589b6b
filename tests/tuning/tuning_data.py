"""Writing training data in each format and shape the tuning program reads."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("parquet", "jsonl", "json", "csv")


def chat_rows(count: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You add numbers."},
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(count)
    ]


def instruction_rows(count: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "instruction": f"Name the number after {i}.",
            "context": "Count upwards." if i % 2 else "",
            "response": f"The number after {i} is {i + 1}.",
        }
        for i in range(count)
    ]


def write_rows(path: Path, rows: Sequence[dict[str, Any]], file_format: str) -> Path:
    """Write `rows` to `path` in `file_format`; in CSV, list values become JSON text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "parquet":
        pq.write_table(pa.Table.from_pylist(list(rows)), path)
    elif file_format == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif file_format == "json":
        path.write_text(json.dumps(list(rows), indent=1), encoding="utf-8")
    elif file_format == "csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
                )
    else:
        raise ValueError(file_format)
    return path


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A plain HTTP file server on 127.0.0.1 for `directory`, on a thread."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
