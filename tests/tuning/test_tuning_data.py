"""Reading training data: every format in both shapes, options, and each kind of bad data."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from tuning_data import FORMATS, chat_rows, instruction_rows, write_rows

from kaito.tuning import DataError, DatasetConfig, load_conversations
from kaito.tuning._data import split_conversations

DEFAULT = DatasetConfig()
DOLLY = DatasetConfig(context_column="context")


@pytest.mark.parametrize("file_format", FORMATS)
def test_chat_rows_load_from_every_format(tmp_path: Path, file_format: str) -> None:
    write_rows(tmp_path / f"train.{file_format}", chat_rows(3), file_format)
    loaded = load_conversations(tmp_path, DEFAULT)
    assert len(loaded.conversations) == 3
    first = loaded.conversations[0]
    assert [m.role for m in first.messages] == ["system", "user", "assistant"]
    assert first.messages[2].content == "0 plus 0 is 0."
    assert first.source == f"train.{file_format} row 0"


@pytest.mark.parametrize("file_format", FORMATS)
def test_instruction_rows_load_from_every_format(tmp_path: Path, file_format: str) -> None:
    write_rows(tmp_path / f"train.{file_format}", instruction_rows(2), file_format)
    loaded = load_conversations(tmp_path, DOLLY)
    assert [c.as_dicts() for c in loaded.conversations] == [
        [
            {"role": "user", "content": "Name the number after 0."},
            {"role": "assistant", "content": "The number after 0 is 1."},
        ],
        [
            {"role": "user", "content": "Name the number after 1.\n\nCount upwards."},
            {"role": "assistant", "content": "The number after 1 is 2."},
        ],
    ]


def test_column_names_system_prompt_and_content_parts_are_configurable(tmp_path: Path) -> None:
    rows = [{"q": "Hi?", "a": "Hello."}]
    write_rows(tmp_path / "qa.jsonl", rows, "jsonl")
    config = DatasetConfig(instruction_column="q", response_column="a", system_prompt="Be kind.")
    loaded = load_conversations(tmp_path, config)
    assert [m.role for m in loaded.conversations[0].messages] == ["system", "user", "assistant"]
    parts = {
        "conversation": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            },
            {"role": "assistant", "content": "C"},
        ]
    }
    write_rows(tmp_path / "sub" / "chat.json", [parts], "json")
    loaded = load_conversations(
        tmp_path, DatasetConfig(messages_column="conversation", dataset_path="sub")
    )
    assert loaded.conversations[0].messages[0].content == "AB"


def test_one_json_object_a_dataset_path_and_an_explicit_extension(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(chat_rows(1)[0]))
    assert len(load_conversations(tmp_path, DEFAULT).conversations) == 1
    write_rows(tmp_path / "data.txt", chat_rows(2), "jsonl")
    config = DatasetConfig(dataset_path="data.txt", dataset_extension="jsonl")
    assert len(load_conversations(tmp_path, config).conversations) == 2


def test_hidden_files_and_other_files_are_not_read(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", chat_rows(2), "jsonl")
    (tmp_path / ".download-0.partial").write_text("garbage")
    (tmp_path / "README.md").write_text("about the data")
    loaded = load_conversations(tmp_path, DEFAULT)
    assert [p.name for p in loaded.files] == ["train.jsonl"]


def test_shuffle_and_split_follow_the_config(tmp_path: Path) -> None:
    write_rows(tmp_path / "train.jsonl", chat_rows(10), "jsonl")
    rows = load_conversations(tmp_path, DEFAULT).conversations
    train, held_out = split_conversations(rows, DatasetConfig(train_test_split=0.8))
    assert (len(train), len(held_out)) == (8, 2)
    again, _ = split_conversations(rows, DatasetConfig(train_test_split=0.8))
    assert train == again
    assert train != list(rows[:8])
    ordered, none = split_conversations(rows, DatasetConfig(shuffle_dataset=False))
    assert (ordered, none) == (list(rows), [])


# -- bad data ----------------------------------------------------------------------------------


def test_no_data_files_is_explained(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no data files in .*looked for \*\.parquet.*notes\.txt"):
        load_conversations(tmp_path, DEFAULT)
    with pytest.raises(DataError, match="does not exist"):
        load_conversations(tmp_path / "missing", DEFAULT)


@pytest.mark.parametrize("file_format", FORMATS)
def test_empty_data_is_explained(tmp_path: Path, file_format: str) -> None:
    if file_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("messages", pa.string())])
        pq.write_table(pa.Table.from_pylist([], schema=schema), tmp_path / "t.parquet")
    else:
        (tmp_path / f"t.{file_format}").write_text("[]" if file_format == "json" else "")
    with pytest.raises(DataError, match="the data is empty"):
        load_conversations(tmp_path, DEFAULT)


def test_corrupt_files_are_explained(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"PAR1 but not really a parquet file")
    with pytest.raises(DataError, match=r"a\.parquet is not a readable parquet file"):
        load_conversations(tmp_path, DEFAULT)
    (tmp_path / "a.parquet").unlink()
    (tmp_path / "b.jsonl").write_text('{"messages": []}\n{oops\n')
    with pytest.raises(DataError, match=r"b\.jsonl line 2 is not valid JSON"):
        load_conversations(tmp_path, DEFAULT)
    (tmp_path / "b.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_conversations(tmp_path, DEFAULT)
    (tmp_path / "b.jsonl").write_text("[1, 2]\n")
    with pytest.raises(DataError, match="line 1 is not a JSON object"):
        load_conversations(tmp_path, DEFAULT)


def test_missing_columns_are_named_with_what_is_expected(tmp_path: Path) -> None:
    write_rows(tmp_path / "t.csv", [{"prompt": "a", "completion": "b"}], "csv")
    with pytest.raises(DataError) as caught:
        load_conversations(tmp_path, DEFAULT)
    message = str(caught.value)
    assert "t.csv has the columns ['prompt', 'completion']" in message
    assert "'messages' column" in message
    assert "'instruction' and 'response'" in message
    assert "DatasetConfig.messages_column" in message


def test_bad_rows_are_left_out_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        *chat_rows(2),
        {"messages": [{"role": "bot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": "not json"},
    ]
    write_rows(tmp_path / "t.jsonl", rows, "jsonl")
    with caplog.at_level(logging.WARNING):
        loaded = load_conversations(tmp_path, DEFAULT)
    assert len(loaded.conversations) == 2
    assert loaded.skipped_rows == 3
    assert "left out 3 bad rows of 5" in caplog.text
    assert "t.jsonl row 2: messages[0].role must be one of system, user, assistant" in caplog.text


def test_all_rows_bad_is_an_error_with_the_reasons(tmp_path: Path) -> None:
    write_rows(tmp_path / "t.json", [{"instruction": "", "response": "r"}] * 2, "json")
    with pytest.raises(DataError, match=r"no usable row in the data .*'instruction' is empty"):
        load_conversations(tmp_path, DEFAULT)
