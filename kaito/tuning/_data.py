"""Training rows from a directory of files: parquet, JSON lines, JSON or CSV, in two shapes.

Whatever brought the data (URLs downloaded, an image pulled, a volume mounted), it ends up as
files in one directory; every file with a known extension under it is read (hidden files and
directories, such as partial downloads, are not), or only `DatasetConfig.dataset_path`.

A file's columns decide its shape:

- chat: a `messages` column (`DatasetConfig.messages_column`) holding a list of
  `{"role": ..., "content": ...}` with roles system, user and assistant, the OpenAI fine-tuning
  format (content may also be a list of `{"type": "text", "text": ...}` parts; in CSV the
  column holds the list as JSON text);
- instruction: `instruction` and `response` columns (`instruction_column`, `response_column`),
  plus an optional `context_column` appended to the instruction, as in dolly.

Problems with a whole file (unreadable, corrupt, no rows, neither shape's columns) stop the run
with a message naming the file. A bad row (a missing role, an empty answer) is left out and
counted, with the first reasons logged; if no row is left the run stops and says why. The
result is plain data (`Conversation`), so this module needs neither torch nor a tokenizer;
pyarrow is imported only for parquet files.
"""

from __future__ import annotations

import csv
import importlib
import json
import logging
import random
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from kaito.tuning._config import DatasetConfig
from kaito.tuning._errors import DataError

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
}
"""Data file extensions and the format each is read as."""
_REASONS_SHOWN = 3


@attrs.frozen
class Message:
    role: str
    content: str


@attrs.frozen
class Conversation:
    """One training example: messages to render with the chat template."""

    messages: tuple[Message, ...]
    source: str
    """Where it came from, for messages: `train.parquet row 12`."""

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


@attrs.frozen
class LoadedData:
    conversations: tuple[Conversation, ...]
    files: tuple[Path, ...]
    skipped_rows: int
    """Rows left out for a problem of their own (see the log for the reasons)."""


class _BadRow(ValueError):
    """A row that cannot be used; the message says why."""


def data_files(data_dir: Path, config: DatasetConfig) -> list[Path]:
    """The files to read, in path order; raises `DataError` when there are none."""
    root = Path(data_dir)
    if config.dataset_path:
        root = root / config.dataset_path
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"the data directory {root} does not exist")
    found: list[Path] = []
    other: list[str] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if config.dataset_extension or path.suffix.lower() in FORMATS:
            found.append(path)
        else:
            other.append(str(relative))
    if not found:
        extensions = ", ".join(f"*{ext}" for ext in FORMATS)
        seen = f"; it holds: {', '.join(other[:10])}" if other else " (it is empty)"
        raise DataError(f"no data files in {root}: looked for {extensions}{seen}")
    return found


def _format(path: Path, config: DatasetConfig) -> str:
    return config.dataset_extension or FORMATS[path.suffix.lower()]


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    # pyarrow ships no type information; it is used through `Any`.
    pa: Any = importlib.import_module("pyarrow")
    pq: Any = importlib.import_module("pyarrow.parquet")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path.name} is not a readable parquet file: {exc}") from exc
    rows: list[dict[str, Any]] = table.to_pylist()
    return list(table.column_names), rows


def _json_rows(value: Any, path: Path) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise DataError(f"{path.name} must hold JSON objects (one per row)")
    return items


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name} line {number} is not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise DataError(f"{path.name} line {number} is not a JSON object")
        rows.append(value)
    return rows


def _read_csv(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        reader = csv.DictReader(text.splitlines())
        rows = [dict(row) for row in reader]
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise DataError(f"{path.name} is not valid CSV: {exc}") from exc
    return columns, rows


def read_rows(path: Path, file_format: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of one data file; raises `DataError` for an unreadable file."""
    if file_format == "parquet":
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name} is not UTF-8 text ({file_format} expected)") from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if file_format == "csv":
        return _read_csv(path, text)
    if file_format == "json":
        try:
            rows = _json_rows(json.loads(text), path) if text.strip() else []
        except json.JSONDecodeError:
            rows = _read_jsonl(path, text)  # JSON lines named .json are common
    else:
        rows = _read_jsonl(path, text)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return columns, rows


def _text(value: Any, what: str) -> str:
    if isinstance(value, list):  # OpenAI content parts
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(value) or not all(isinstance(p, str) for p in parts):
            raise _BadRow(f"{what} has parts other than text")
        value = "".join(str(p) for p in parts)
    if not isinstance(value, str):
        raise _BadRow(f"{what} must be text, got {type(value).__name__}")
    return value


def _chat(value: Any, config: DatasetConfig) -> tuple[Message, ...]:
    column = config.messages_column
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _BadRow(f"'{column}' is not a JSON list ({exc.msg})") from None
    if not isinstance(value, list) or not value:
        raise _BadRow(f"'{column}' must be a non-empty list of messages")
    messages: list[Message] = []
    for index, item in enumerate(value):
        where = f"{column}[{index}]"
        if not isinstance(item, dict):
            raise _BadRow(f"{where} must be an object with role and content")
        role = item.get("role")
        if role not in ROLES:
            raise _BadRow(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        messages.append(Message(role, _text(item.get("content"), f"{where}.content")))
    if not any(m.role == "assistant" and m.content.strip() for m in messages):
        raise _BadRow(f"'{column}' has no assistant message with content to learn")
    return _with_system(messages, config)


def _with_system(messages: list[Message], config: DatasetConfig) -> tuple[Message, ...]:
    if config.system_prompt and messages[0].role != "system":
        messages.insert(0, Message("system", config.system_prompt))
    return tuple(messages)


def _instruction(row: dict[str, Any], config: DatasetConfig) -> tuple[Message, ...]:
    instruction = _text(row.get(config.instruction_column), f"'{config.instruction_column}'")
    response = _text(row.get(config.response_column), f"'{config.response_column}'")
    if not instruction.strip():
        raise _BadRow(f"'{config.instruction_column}' is empty")
    if not response.strip():
        raise _BadRow(f"'{config.response_column}' is empty")
    if config.context_column:
        context = row.get(config.context_column)
        if context is not None:
            context = _text(context, f"'{config.context_column}'")
            if context.strip():
                instruction = f"{instruction}\n\n{context}"
    return _with_system([Message("user", instruction), Message("assistant", response)], config)


def _shape(path: Path, columns: Sequence[str], config: DatasetConfig) -> str:
    if config.messages_column in columns:
        return "chat"
    if config.instruction_column in columns and config.response_column in columns:
        return "instruction"
    raise DataError(
        f"{path.name} has the columns {list(columns)}; kaito needs a "
        f"'{config.messages_column}' column (chat format) or the "
        f"'{config.instruction_column}' and '{config.response_column}' columns (instruction "
        "format). Set DatasetConfig.messages_column, instruction_column and response_column "
        "to use other names."
    )


def load_conversations(data_dir: str | Path, config: DatasetConfig) -> LoadedData:
    """Every usable row of the data directory as a conversation (see the module doc)."""
    files = data_files(Path(data_dir), config)
    conversations: list[Conversation] = []
    reasons: list[str] = []
    skipped = 0
    empty: list[str] = []
    for path in files:
        columns, rows = read_rows(path, _format(path, config))
        if not rows:
            empty.append(path.name)
            continue
        shape = _shape(path, columns, config)
        for number, row in enumerate(rows):
            source = f"{path.name} row {number}"
            try:
                if shape == "chat":
                    messages = _chat(row.get(config.messages_column), config)
                else:
                    messages = _instruction(row, config)
            except _BadRow as exc:
                skipped += 1
                if len(reasons) < _REASONS_SHOWN:
                    reasons.append(f"{source}: {exc}")
                continue
            conversations.append(Conversation(messages, source))
    if empty and len(empty) == len(files):
        raise DataError(f"the data is empty: {', '.join(empty)} hold no rows")
    for name in empty:
        log.warning("%s holds no rows", name)
    if skipped:
        shown = "; ".join(reasons)
        if not conversations:
            raise DataError(f"no usable row in the data ({skipped} rows, all bad): {shown}")
        log.warning(
            "left out %d bad rows of %d; e.g. %s", skipped, skipped + len(conversations), shown
        )
    log.info("read %d rows from %d files", len(conversations), len(files))
    return LoadedData(tuple(conversations), tuple(files), skipped)


def split_conversations(
    conversations: Iterable[Conversation], config: DatasetConfig
) -> tuple[list[Conversation], list[Conversation]]:
    """Shuffle (when configured, with the configured seed) and split into train and eval rows."""
    rows = list(conversations)
    if config.shuffle_dataset:
        random.Random(config.shuffle_seed).shuffle(rows)
    if config.train_test_split >= 1.0:
        return rows, []
    cut = max(1, round(len(rows) * config.train_test_split))
    return rows[:cut], rows[cut:]
