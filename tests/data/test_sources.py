"""Tests for jaxlm/data/sources.py: the built-in corpus, text and JSONL files, and their errors."""

import json
import logging
import os
from pydoc_data.topics import topics

import pytest

from jaxlm.config import base_config
from jaxlm.data.errors import DataError
from jaxlm.data.select import train_source, val_source
from jaxlm.data.sources import JsonlSource, TextSource, builtin_documents


def _data(source: str, path: str = "", **fields):
    """A run's data section reading `source`."""
    data = base_config().data
    data.source, data.path = source, path
    data.update(fields)
    return data


def test_builtin_is_the_stdlib_topics_in_key_order():
    documents = builtin_documents()
    assert documents == [topics[key] for key in sorted(topics)]
    assert len(documents) > 50
    text = "".join(documents)
    assert len(text) > 300_000
    # English prose: "the" is the most common word of English and frequent in these docs.
    words = text.lower().split()
    assert words.count("the") / len(words) > 0.03
    assert list(train_source(_data("builtin")).documents()) == documents


def test_reads_files_sorted_by_path_with_glob_and_home(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first ünïcode\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("not matched", encoding="utf-8")
    assert list(TextSource(str(tmp_path / "*.txt")).documents()) == ["first ünïcode\n", "second\n"]
    assert list(TextSource(str(tmp_path / "b.txt")).documents()) == ["second\n"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert list(TextSource("~/a.txt").documents()) == ["first ünïcode\n"]


def test_recursive_glob_and_empty_files_skipped(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("deep", encoding="utf-8")
    (tmp_path / "y.txt").write_text("", encoding="utf-8")
    assert list(TextSource(str(tmp_path / "**" / "*.txt")).documents()) == ["deep"]


def test_documents_per_line_and_per_paragraph(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo words\r\n\n  \nthree\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n\nfour\nstill four\n\n\nfive", encoding="utf-8")
    pattern = str(tmp_path / "*.txt")
    assert list(TextSource(pattern, "line").documents()) == ["one", "two words", "three", "four", "still four", "five"]
    assert list(TextSource(pattern, "paragraph").documents()) == ["one\ntwo words", "three", "four\nstill four", "five"]
    with pytest.raises(DataError, match="config.data.document='sentence'"):
        TextSource(pattern, "sentence")


def test_jsonl_reads_the_text_field(tmp_path):
    lines = [{"text": "first doc", "id": 1}, {"text": "", "id": 2}, {"text": "third\nwith a newline", "id": 3}]
    (tmp_path / "a.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "other field"}), encoding="utf-8")
    assert list(JsonlSource(str(tmp_path / "a.jsonl")).documents()) == ["first doc", "third\nwith a newline"]
    assert list(JsonlSource(str(tmp_path / "b.jsonl"), text_field="body").documents()) == ["other field"]
    source = train_source(_data("jsonl", str(tmp_path / "a.jsonl")))
    assert isinstance(source, JsonlSource) and len(list(source.documents())) == 2


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"body": "x"}', r"b.jsonl:2: no string field config.data.text_field='text' \(found 'body'\)"),
        ('{"text": 3}', r"b.jsonl:2: no string field config.data.text_field='text' \(found 'text'\)"),
        ('["text"]', r"b.jsonl:2: no string field .*\(found list\)"),
        ('{"text": "unterminated', r"b.jsonl:2: not valid JSON"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    (tmp_path / "b.jsonl").write_text('{"text": "fine"}\n' + line + "\n", encoding="utf-8")
    documents = JsonlSource(str(tmp_path / "b.jsonl")).documents()
    assert next(documents) == "fine"
    with pytest.raises(DataError, match=message):
        next(documents)


def test_undecodable_bytes_are_replaced_and_counted(tmp_path, caplog):
    path = tmp_path / "bad.txt"
    # Two invalid sequences, and one genuine U+FFFD that must not be counted.
    path.write_bytes(b"ok \xff here \xc3( and \xef\xbf\xbd")
    source = TextSource(str(path))
    with caplog.at_level(logging.WARNING):
        (text,) = source.documents()
    assert text == "ok \ufffd here \ufffd( and \ufffd"
    # 2 in 20 bytes: well above the share at which a file is warned about as binary.
    assert source.replaced == 2 and "at least 2 of its 20 bytes (10.0%) are not UTF-8" in caplog.text
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "a \xff b"}\n{"text": "\xfe\xfe"}\n')
    source = JsonlSource(str(tmp_path / "bad.jsonl"))
    assert list(source.documents()) == ["a \ufffd b", "\ufffd\ufffd"] and source.replaced == 3


@pytest.mark.parametrize("name", ["missing.txt", "*.nothing", "folder"])
def test_bad_paths_raise_data_error_naming_the_field(tmp_path, name):
    (tmp_path / "folder").mkdir()
    (tmp_path / "ok.txt").write_text("text", encoding="utf-8")
    pattern = str(tmp_path / name)
    for source in ("text", "jsonl"):
        with pytest.raises(DataError, match="config.data.path") as error:
            train_source(_data(source, pattern))
        assert pattern in str(error.value)
        with pytest.raises(DataError, match="config.data.val_path"):
            val_source(_data(source, str(tmp_path / "ok.txt"), val_path=pattern))


def test_identity_follows_the_files(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one", encoding="utf-8")
    first = TextSource(str(path)).identity
    assert TextSource(str(path)).identity == first
    assert TextSource(str(path), "line").identity != first
    path.write_text("one two", encoding="utf-8")
    os.utime(path, ns=(1, 1))
    assert TextSource(str(path)).identity != first


def test_val_source_only_when_asked(tmp_path):
    (tmp_path / "t.txt").write_text("train", encoding="utf-8")
    (tmp_path / "v.txt").write_text("val\nmore val", encoding="utf-8")
    assert val_source(_data("text", str(tmp_path / "t.txt"))) is None
    assert val_source(_data("builtin")) is None
    held = val_source(_data("text", str(tmp_path / "t.txt"), val_path=str(tmp_path / "v.txt"), document="line"))
    assert list(held.documents()) == ["val", "more val"] and "config.data.val_path" in held.field
