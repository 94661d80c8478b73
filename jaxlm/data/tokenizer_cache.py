"""The run's tokenizer: loaded from a file, or trained on the corpus and cached in the workdir.

`build_tokenizer` loads `data.tokenizer.path` or trains one and caches it in <workdir>/tokenizer/,
keyed by its settings and the source's identity. `load_tokenizer` and `tokenizer_from_bytes` read a
saved tokenizer of either kind back (a checkpoint keeps the bytes of the one it was trained with).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import pathlib

import ml_collections

from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.errors import DataError
from jaxlm.data.hf_tokenizer import HFTokenizer
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.data.sources import Source
from jaxlm.data.tokenizer import TOKENIZER_KINDS, Tokenizer

log = logging.getLogger(__name__)

# Bump when training options change, so caches made by older code are retrained.
_CACHE_VERSION = 2
_SETTINGS_FILE = "settings.json"
KINDS = {"sentencepiece": SentencePieceTokenizer, "char": CharTokenizer, "hf": HFTokenizer}
assert tuple(KINDS) == TOKENIZER_KINDS


def _read_settings(path: str) -> dict | None:
    try:
        return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_cache(directory: str, tokenizer: Tokenizer, settings: dict) -> None:
    settings_path = os.path.join(directory, _SETTINGS_FILE)
    # Settings go last, so a run killed mid-write leaves a cache that does not match and is retrained.
    if os.path.exists(settings_path):
        os.remove(settings_path)
    tokenizer.save(directory)
    pathlib.Path(settings_path + ".tmp").write_text(json.dumps(settings, indent=1), encoding="utf-8")
    os.replace(settings_path + ".tmp", settings_path)


def load_tokenizer(path: str) -> Tokenizer:
    """A saved tokenizer of either kind, by its file name (tokenizer.model: sentencepiece; tokenizer.json: char)."""
    name = os.path.basename(path)
    kind = next((kind for kind in KINDS.values() if kind.FILENAME == name), SentencePieceTokenizer)
    return kind.load(path)


def tokenizer_from_bytes(file_name: str, content: bytes, origin: str) -> Tokenizer:
    """A tokenizer from the bytes `Tokenizer.serialized` gave, saved as `file_name`; `origin` names their source."""
    if file_name == CharTokenizer.FILENAME:
        return CharTokenizer.from_bytes(content, origin)
    if file_name == HFTokenizer.FILENAME:
        return HFTokenizer.from_bytes(content, origin)
    return SentencePieceTokenizer.from_bytes(content, origin, origin=origin)


def build_tokenizer(
    spec: ml_collections.ConfigDict, source: Source, *, max_documents: int = 0, cache_dir: str | None = None
) -> Tokenizer:
    """The tokenizer `spec` (a run's `data.tokenizer`) names: loaded from its path, else trained on `source`.

    A trained tokenizer is cached in the folder `cache_dir` (a run's <workdir>/tokenizer/) beside
    `settings.json` (kind, training
    settings, the source's identity and `max_documents`, the documents read) and reused while both match.
    It does not depend on the run's seed, so runs that differ only in seed share one tokenization and
    comparable losses.
    """
    if spec.kind not in KINDS:
        raise DataError(f"config.data.tokenizer.kind={spec.kind!r}: must be one of {', '.join(KINDS)}")
    kind = KINDS[spec.kind]
    if spec.path:
        return kind.load(spec.path)
    if spec.kind == "hf":
        raise DataError(
            'config.data.tokenizer.kind="hf" loads a Hugging Face tokenizer.json: set data.tokenizer.path to it'
        )

    settings = {"version": _CACHE_VERSION, "kind": spec.kind, "source": source.identity, "max_documents": max_documents}
    if spec.kind == "sentencepiece":
        settings.update(model_type=spec.model_type, vocab_size=spec.vocab_size, max_sentences=spec.max_sentences)
    cache = cache_dir
    if cache and _read_settings(os.path.join(cache, _SETTINGS_FILE)) == settings:
        try:
            tokenizer = kind.load(os.path.join(cache, kind.FILENAME))
            log.info("Reusing the tokenizer cached in %s", cache)
            return tokenizer
        except DataError as e:
            log.warning("The tokenizer cached in %s is unreadable (%s); training a new one", cache, e)

    documents = itertools.islice(source.documents(), max_documents or None)
    first = next(documents, None)
    if first is None:  # say so here, not as sentencepiece's complaint about an empty sample
        raise DataError(
            f"{source.field}: holds no text (not one non-empty document) to train a tokenizer on; "
            "point it at data that holds text"
        )
    documents = itertools.chain([first], documents)
    if spec.kind == "char":
        tokenizer = CharTokenizer.train(documents)
    else:
        tokenizer = SentencePieceTokenizer.train(
            documents, spec.vocab_size, spec.model_type, max_sentences=spec.max_sentences
        )
    if cache:
        _write_cache(cache, tokenizer, settings)
        log.info("Trained the tokenizer (%s) and cached it in %s", tokenizer.describe(), cache)
    return tokenizer
