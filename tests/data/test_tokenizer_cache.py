"""Tests for jaxlm/data/tokenizer_cache.py: a run's tokenizer loaded from its path, or trained and cached."""

import logging
import os

import ml_collections

from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.data.sources import ListSource, builtin_documents
from jaxlm.data.tokenizer_cache import build_tokenizer as build_from_spec


def _config(**tokenizer) -> ml_collections.ConfigDict:
    spec = {
        "kind": "sentencepiece",
        "path": "",
        "model_type": "bpe",
        "vocab_size": 512,
        "max_sentences": 1000,
        **tokenizer,
    }
    return ml_collections.ConfigDict({"data": {"tokenizer": spec, "max_documents": 0}})


def _source(documents):
    return ListSource(documents, "test documents")


def build_tokenizer(config: ml_collections.ConfigDict, source, workdir: str | None):
    """The run's tokenizer as the pipeline builds it, cached in <workdir>/tokenizer."""
    return build_from_spec(
        config.data.tokenizer,
        source,
        max_documents=config.data.max_documents,
        cache_dir=os.path.join(workdir, "tokenizer") if workdir else None,
    )


def test_build_loads_a_given_path(tmp_path):
    sp_tokenizer = SentencePieceTokenizer.train(builtin_documents(), vocab_size=512, model_type="bpe")
    path = sp_tokenizer.save(str(tmp_path))
    loaded = build_tokenizer(_config(path=path), _source(["ignored"]), None)
    assert loaded.fingerprint == sp_tokenizer.fingerprint
    assert loaded.encode("Hello world\n") == sp_tokenizer.encode("Hello world\n")


def test_build_caches_and_invalidates(tmp_path, monkeypatch, caplog):
    trained = []
    train = SentencePieceTokenizer.train.__func__

    def counting_train(cls, *args, **kwargs):
        trained.append(args[1:])
        return train(cls, *args, **kwargs)

    monkeypatch.setattr(SentencePieceTokenizer, "train", classmethod(counting_train))
    corpus = builtin_documents()[:10]
    first = build_tokenizer(_config(vocab_size=400), _source(corpus), str(tmp_path))
    assert (tmp_path / "tokenizer" / "tokenizer.model").is_file()
    assert (tmp_path / "tokenizer" / "settings.json").is_file()
    with caplog.at_level(logging.INFO):
        again = build_tokenizer(_config(vocab_size=400), _source(corpus), str(tmp_path))
    assert "Reusing" in caplog.text and len(trained) == 1
    assert again.encode(corpus[0]) == first.encode(corpus[0])

    build_tokenizer(_config(vocab_size=420), _source(corpus), str(tmp_path))  # settings changed
    assert len(trained) == 2
    changed = build_tokenizer(_config(vocab_size=420), _source(corpus[:9]), str(tmp_path))  # corpus changed
    assert len(trained) == 3 and changed.vocab_size == 420
    build_tokenizer(_config(vocab_size=420), _source(corpus[:9]), str(tmp_path))
    assert len(trained) == 3

    (tmp_path / "tokenizer" / "tokenizer.model").write_bytes(b"corrupt")
    build_tokenizer(_config(vocab_size=420), _source(corpus[:9]), str(tmp_path))
    assert len(trained) == 4
    build_tokenizer(_config(vocab_size=420), _source(corpus[:9]), None)  # no workdir: no cache
    assert len(trained) == 5
    bounded = _config(vocab_size=420)
    bounded.data.max_documents = 5  # reads fewer documents: a different training corpus
    build_tokenizer(bounded, _source(corpus[:9]), str(tmp_path))
    assert len(trained) == 6


def test_build_char_kind_caches_too(tmp_path):
    tokenizer = build_tokenizer(_config(kind="char"), _source(["abc\n"]), str(tmp_path))
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert build_tokenizer(_config(kind="char"), _source(["abc\n"]), str(tmp_path)).chars == tokenizer.chars == "\nabc"
    assert build_tokenizer(_config(kind="char"), _source(["abd\n"]), str(tmp_path)).chars == "\nabd"
