"""Tests for jaxlm/data/corpus.py: the built-in corpus, reading text files and their errors."""

import logging

import ml_collections
import pytest
from pydoc_data.topics import topics

from jaxlm.data.corpus import builtin_documents, load_documents, read_text_files
from jaxlm.data.errors import DataError


def _config(source: str, path: str = "") -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"data": {"source": source, "path": path}})


def test_builtin_is_the_stdlib_topics_in_key_order():
    documents = builtin_documents()
    assert documents == [topics[key] for key in sorted(topics)]
    assert len(documents) > 50
    text = "".join(documents)
    assert len(text) > 300_000
    # English prose: "the" is the most common word of English and frequent in these docs.
    words = text.lower().split()
    assert words.count("the") / len(words) > 0.03


def test_reads_files_sorted_by_path_with_glob_and_home(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first ünïcode\n", encoding="utf-8")
    (tmp_path / "c.md").write_text("not matched", encoding="utf-8")
    assert read_text_files(str(tmp_path / "*.txt")) == ["first ünïcode\n", "second\n"]
    assert read_text_files(str(tmp_path / "b.txt")) == ["second\n"]
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_text_files("~/a.txt") == ["first ünïcode\n"]


def test_recursive_glob_and_empty_files_skipped(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("deep", encoding="utf-8")
    (tmp_path / "y.txt").write_text("", encoding="utf-8")
    assert read_text_files(str(tmp_path / "**" / "*.txt")) == ["deep"]


def test_undecodable_bytes_are_replaced_and_counted(tmp_path, caplog):
    path = tmp_path / "bad.txt"
    # Two invalid sequences, and one genuine U+FFFD that must not be counted.
    path.write_bytes(b"ok \xff here \xc3( and \xef\xbf\xbd")
    with caplog.at_level(logging.WARNING):
        (text,) = read_text_files(str(path))
    assert text == "ok \ufffd here \ufffd( and \ufffd"
    assert "2 undecodable" in caplog.text


@pytest.mark.parametrize("name", ["missing.txt", "*.nothing", "folder", "empty*.txt"])
def test_bad_paths_raise_data_error_naming_the_field(tmp_path, name):
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty1.txt").write_text("", encoding="utf-8")
    (tmp_path / "empty2.txt").write_text("", encoding="utf-8")
    pattern = str(tmp_path / name)
    with pytest.raises(DataError, match="config.data.path") as error:
        load_documents(_config("text", pattern))
    assert pattern in str(error.value)
    assert isinstance(error.value, ValueError)


def test_load_documents_picks_the_source(tmp_path):
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    assert load_documents(_config("text", str(tmp_path / "a.txt"))) == ["hello"]
    assert load_documents(_config("builtin")) == builtin_documents()
