"""Tests for jaxlm/data/token_store.py: tokenizing once, the on-disk cache, bounds and errors."""

import hashlib
import os

import numpy as np
import pytest

from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.errors import DataError
from jaxlm.data.sources import ListSource, TextSource
from jaxlm.data.token_store import tokenize

DOCUMENTS = ["hello world", "", "a second, longer document\nwith two lines", "x"]


class CountingTokenizer(CharTokenizer):
    """A char tokenizer that counts the documents it encodes."""

    calls = 0

    def encode(self, text):
        CountingTokenizer.calls += 1
        return super().encode(text)


@pytest.fixture
def tokenizer():
    CountingTokenizer.calls = 0
    return CountingTokenizer(sorted(set("".join(DOCUMENTS))))


def test_tokens_and_lengths_in_memory(tokenizer):
    corpus = tokenize(ListSource(DOCUMENTS, "docs"), tokenizer)
    non_empty = [d for d in DOCUMENTS if d]
    np.testing.assert_array_equal(corpus.tokens, sum((tokenizer.encode(d) for d in non_empty), []))
    np.testing.assert_array_equal(corpus.lengths, [len(d) for d in non_empty])
    assert corpus.tokens.dtype == np.int32 and corpus.lengths.dtype == np.int64
    want = hashlib.sha256(corpus.tokens.astype("<i4").tobytes() + corpus.lengths.astype("<i8").tobytes())
    assert corpus.sha256 == want.hexdigest()


def test_cache_is_reused_and_equal(tokenizer, tmp_path):
    source = ListSource(DOCUMENTS, "docs")
    in_memory = tokenize(source, tokenizer)
    calls = tokenizer.calls
    cached = tokenize(source, tokenizer, cache_dir=str(tmp_path))
    assert tokenizer.calls == 2 * calls
    again = tokenize(source, tokenizer, cache_dir=str(tmp_path))
    assert tokenizer.calls == 2 * calls  # read back, not re-tokenized
    assert isinstance(again.tokens, np.memmap)
    for corpus in (cached, again):
        np.testing.assert_array_equal(corpus.tokens, in_memory.tokens)
        np.testing.assert_array_equal(corpus.lengths, in_memory.lengths)
        assert corpus.sha256 == in_memory.sha256
    (entry,) = os.listdir(tmp_path)  # one cache, no staging folder left behind
    assert not entry.count(".tmp")


def test_cache_follows_source_tokenizer_and_bounds(tokenizer, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\nthree\n", encoding="utf-8")
    cache = str(tmp_path / "cache")
    first = tokenize(TextSource(str(path), "line"), tokenizer, cache_dir=cache)
    path.write_text("one\ntwo\nfour!\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))
    changed = tokenize(TextSource(str(path), "line"), tokenizer, cache_dir=cache)
    assert changed.sha256 != first.sha256 and len(os.listdir(cache)) == 2
    bounded = tokenize(TextSource(str(path), "line"), tokenizer, max_documents=2, cache_dir=cache)
    np.testing.assert_array_equal(bounded.lengths, [3, 3])
    by_tokens = tokenize(TextSource(str(path), "line"), tokenizer, max_tokens=4, cache_dir=cache)
    np.testing.assert_array_equal(by_tokens.lengths, [3, 3])  # stops at the document that reaches 4
    other = CharTokenizer(sorted(set("onetwofur!") | {"h"}))
    tokenize(TextSource(str(path), "line"), other, cache_dir=cache)
    assert len(os.listdir(cache)) == 5


def test_broken_cache_is_rebuilt(tokenizer, tmp_path):
    source = ListSource(DOCUMENTS, "docs")
    first = tokenize(source, tokenizer, cache_dir=str(tmp_path))
    (entry,) = tmp_path.iterdir()
    (entry / "lengths.int64").write_bytes(b"\x01" * 8)
    rebuilt = tokenize(source, tokenizer, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(rebuilt.lengths, first.lengths)


def test_no_text_is_an_error_naming_the_source(tokenizer, tmp_path):
    with pytest.raises(DataError, match="empty docs: holds no text"):
        tokenize(ListSource(["", ""], "empty docs"), tokenizer)
    with pytest.raises(DataError, match="empty docs: holds no text"):
        tokenize(ListSource([], "empty docs"), tokenizer, cache_dir=str(tmp_path))
    assert not os.listdir(tmp_path)
