"""Tokenizers with one fixed layout of special ids: per character, or a sentencepiece model.

Every kind puts pad, unk, bos, eos and mask at ids 0..4, so packing, masking and the model never
ask which tokenizer they were given; BERT's [CLS] and [SEP] are bos and eos (<s> and </s>, as in
RoBERTa). `build_tokenizer` loads one from `config.data.tokenizer.path` or trains one and caches it
in the workdir, keyed by its settings and the source's identity. `fingerprint` (a sha256 of the saved
tokenizer) names it in checkpoints.
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import logging
import math
import operator
import os
import pathlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (registers dictionary_encode now, not at the first encode: ~0.1 s)
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from jaxlm.data.errors import DataError
from jaxlm.data.sources import Source

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = range(5)
SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")

MODEL_TYPES = ("bpe", "unigram", "char")
# Bounds the sentencepiece trainer's memory on a large corpus (config.data.tokenizer.max_sentences).
MAX_SENTENCES = 1_000_000
# Sentencepiece skips sentences over 4192 bytes; 1024 characters are at most 4096 UTF-8 bytes.
_MAX_SENTENCE_CHARS = 1024
# Bump when training options change, so caches made by older code are retrained.
_CACHE_VERSION = 2
_SETTINGS_FILE = "settings.json"
# Chunks, stretches of text no piece of a model trained here spans (SentencePieceTokenizer._chunks_split):
# a newline, or a run of spaces and the characters after it up to the next space or newline (the regex
# "\n|[ ▁]*[^ ▁\n]*"). U+2581 ("▁") counts as a space: sentencepiece writes spaces as it, so cannot tell
# the two apart. `_chunk_starts` finds them in UTF-8 bytes.
_SPACE_AFTER_OTHER = re.compile("[^\u2581\n]\u2581")  # in a piece: "▁" after something else than "▁"
_SPACE_BYTE, _NEWLINE_BYTE = 0x20, 0x0A
_SPM_SPACE_BYTES = tuple("\u2581".encode("utf-8"))  # E2 96 81
# Distinct chunks whose ids `encode_flat` remembers; past that, new ones are encoded every time they come.
_CHUNK_CACHE_LIMIT = 1 << 20


class Tokenizer(Protocol):
    """Text to ids and back, with pad=0, unk=1, bos=2, eos=3, mask=4 for every kind."""

    vocab_size: int
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    mask_id: int
    special_ids: frozenset[int]
    fingerprint: str  # sha256 of the saved tokenizer: equal fingerprints tokenize identically.

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without bos or eos."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, faster."""

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` back to back: (ids [T] int32, each text's id count [N] int64)."""

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: pad skipped, other specials and out-of-vocabulary ids shown as their names."""

    def save(self, directory: str) -> str:
        """Writes the tokenizer into `directory` and returns the file's path."""

    def describe(self) -> str:
        """One line for logs: the kind and the vocabulary size."""


class _FixedSpecials:
    """The special ids every tokenizer here shares."""

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    mask_id = MASK_ID
    special_ids = frozenset(range(len(SPECIAL_PIECES)))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text."""
        return [self.encode(text) for text in texts]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` back to back: (ids [T] int32, each text's id count [N] int64)."""
        encoded = self.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        return np.fromiter(itertools.chain.from_iterable(encoded), np.int32, int(lengths.sum())), lengths


def _bad_path(path: str, why: str) -> DataError:
    return DataError(f"config.data.tokenizer.path={path!r}: {why}")


class CharTokenizer(_FixedSpecials):
    """One id per character: the specials, then the corpus's distinct characters in code-point order.

    Encoding then decoding corpus text gives it back exactly; a character the corpus lacks becomes unk.
    """

    FILENAME = "tokenizer.json"

    def __init__(self, chars: Sequence[str]):
        self.chars = "".join(chars)
        self.vocab_size = len(SPECIAL_PIECES) + len(self.chars)
        self.fingerprint = hashlib.sha256(self._saved().encode("utf-8")).hexdigest()
        # A sentinel above every code point lets searchsorted's "past the end" index be read safely.
        self._codepoints = np.append(np.array([ord(c) for c in self.chars], np.uint32), np.uint32(2**32 - 1))
        self._pieces = np.array(list(SPECIAL_PIECES) + list(self.chars), dtype=object)

    @classmethod
    def train(cls, documents: Iterable[str]) -> CharTokenizer:
        """The vocabulary of every character in `documents`."""
        chars: set[str] = set()
        for document in documents:
            chars.update(document)
        return cls(sorted(chars))

    @classmethod
    def load(cls, path: str) -> CharTokenizer:
        """A tokenizer written by `save`."""
        try:
            saved = json.loads(pathlib.Path(os.path.expanduser(path)).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _bad_path(path, f"cannot read a char tokenizer ({e}); give a {cls.FILENAME} written by "
                                  "jaxlm, or leave it empty to build one from the corpus") from e
        chars = saved.get("chars") if isinstance(saved, dict) else None
        if not isinstance(chars, str) or saved.get("kind") != "char" or list(chars) != sorted(set(chars)):
            raise _bad_path(path, "is not a char tokenizer written by jaxlm; leave it empty to build one")
        return cls(chars)

    def encode(self, text: str) -> list[int]:
        """The id of each character of `text` (unk for characters outside the vocabulary)."""
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        index = np.searchsorted(self._codepoints, codepoints)
        known = self._codepoints[index] == codepoints
        return np.where(known, index + len(SPECIAL_PIECES), UNK_ID).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of `ids`: pad skipped, other specials and unknown ids shown as their names."""
        ids = np.fromiter(ids, np.int64)
        ids = np.where((ids >= 0) & (ids < self.vocab_size), ids, UNK_ID)
        return "".join(self._pieces[ids[ids != PAD_ID]])

    def save(self, directory: str) -> str:
        """Writes `tokenizer.json` into `directory` and returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.FILENAME)
        pathlib.Path(path).write_text(self._saved(), encoding="utf-8")
        return path

    def _saved(self) -> str:
        return json.dumps({"kind": "char", "chars": self.chars})

    def describe(self) -> str:
        """One line for logs: the kind and the vocabulary size."""
        return f"char, {self.vocab_size} ids ({len(self.chars)} characters + {len(SPECIAL_PIECES)} specials)"


def _sentences(document: str) -> Iterator[str]:
    """The document's non-empty lines, cut into pieces sentencepiece does not skip as too long."""
    for line in document.split("\n"):
        for start in range(0, len(line), _MAX_SENTENCE_CHARS):
            yield line[start:start + _MAX_SENTENCE_CHARS]


def _sample_sentences(documents: Iterable[str], max_sentences: int, seed: int) -> list[str]:
    """Every sentence, or a uniform random sample of `max_sentences` of them, in corpus order.

    One pass in memory bounded by the sample: reservoir sampling with geometric skips (Li's
    algorithm L), so a corpus of any size streams through and random draws are few.
    """
    rng = np.random.default_rng(seed)
    k = max_sentences

    def log_uniform() -> float:
        return math.log(1.0 - rng.random())  # 1 - [0, 1) lies in (0, 1], so the log is finite

    def skip(w: float) -> int:
        """Sentences passed over before the next one enters the sample."""
        return math.floor(log_uniform() / math.log1p(-w)) if w < 1 else 0

    sample: list[tuple[int, str]] = []
    w = math.exp(log_uniform() / k)
    next_pick = k + skip(w)
    sentences = (sentence for document in documents for sentence in _sentences(document))
    for i, sentence in enumerate(sentences):
        if i < k:
            sample.append((i, sentence))
        elif i == next_pick:
            sample[int(rng.integers(k))] = (i, sentence)
            w *= math.exp(log_uniform() / k)
            next_pick += 1 + skip(w)
    return [sentence for _, sentence in sorted(sample)]


class SentencePieceTokenizer(_FixedSpecials):
    """A sentencepiece model whose ids 0..4 are <pad>, <unk>, <s>, </s> and a user-defined <mask>.

    Models trained here normalize nothing (identity rule, no dummy prefix, spaces kept as they are),
    make "\\n" a piece of its own and fall back to UTF-8 bytes for any character outside the vocabulary,
    so decode(encode(text)) == text for ordinary text, runs of spaces, tabs, newlines and any script.
    Two cases do not round-trip as ids: U+2581 ("▁", sentencepiece's space symbol) decodes as a space,
    and the literal text "<mask>" encodes as the mask id (it decodes back to "<mask>").
    """

    FILENAME = "tokenizer.model"

    def __init__(self, model_proto: bytes, origin: str):
        self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self._origin = origin
        self.vocab_size = self._processor.get_piece_size()
        self.fingerprint = hashlib.sha256(self._processor.serialized_model_proto()).hexdigest()
        # The pieces joined by newlines, for the checks below: one C pass each, not a Python loop over 8k.
        pieces = "\n".join(self._processor.id_to_piece(list(range(self.vocab_size))))
        self._newline_id = self._newline_splits(sentencepiece_model_pb2.ModelProto.FromString(model_proto), pieces)
        self._chunk_cache = _ChunkCache() if self._chunks_split(pieces) else None

    @classmethod
    def train(cls, documents: Iterable[str], vocab_size: int, model_type: str = "bpe", seed: int = 0,
              max_sentences: int = MAX_SENTENCES) -> SentencePieceTokenizer:
        """A model of `vocab_size` pieces (specials included; for "char" at most that many) trained on a
        sample of at most `max_sentences` of the documents' lines."""
        if model_type not in MODEL_TYPES:
            raise DataError(f"config.data.tokenizer.model_type={model_type!r}: must be one of {', '.join(MODEL_TYPES)}")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(_sample_sentences(documents, max_sentences, seed)), model_writer=model,
                vocab_size=vocab_size, model_type=model_type,
                # A char model has as many pieces as the sample has characters; vocab_size only caps it.
                hard_vocab_limit=model_type != "char",
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                # User-defined symbols take the next ids in order: <mask> lands at 4, "\n" at 5.
                user_defined_symbols=[SPECIAL_PIECES[MASK_ID], "\n"],
                byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=False, allow_whitespace_only_pieces=True, minloglevel=2)
        except RuntimeError as e:
            raise DataError(f"config.data.tokenizer.vocab_size={vocab_size}: sentencepiece cannot train a "
                            f"{model_type} model of this size on this corpus ({e}); pick a size it accepts "
                            "or use more text") from e
        return cls(model.getvalue(), f"{model_type}, trained on this corpus")

    @classmethod
    def load(cls, path: str) -> SentencePieceTokenizer:
        """The sentencepiece `.model` at `path`, checked for the fixed special ids."""
        try:
            proto = pathlib.Path(os.path.expanduser(path)).read_bytes()
            processor = spm.SentencePieceProcessor(model_proto=proto)
        except (OSError, RuntimeError) as e:
            raise _bad_path(path, f"cannot load a sentencepiece model ({e}); give a .model file, or leave it "
                                  "empty to train one") from e
        found = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id(),
                 processor.piece_to_id(SPECIAL_PIECES[MASK_ID]))
        if found != (PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID):
            raise _bad_path(path, f"the model must have pad=0, unk=1, bos=2, eos=3 and a user-defined '<mask>' "
                                  f"piece at 4, but has pad, unk, bos, eos, <mask> at {found} (-1 = none, 1 = "
                                  "unknown); train it with --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 "
                                  "--user_defined_symbols=<mask>, or leave the path empty to train one here")
        return cls(proto, path)

    def encode(self, text: str) -> list[int]:
        """The piece ids of `text`, without bos or eos."""
        return self._processor.encode(text)

    def _newline_splits(self, model: sentencepiece_model_pb2.ModelProto, pieces: str) -> int | None:
        """The id of "\\n" when encoding lines apart and joining them with it equals encoding the whole text.

        True of BPE and char models (merges never cross a piece no other piece contains) whose "\\n" is
        a piece of its own, that normalize nothing and add no dummy prefix at a line's start, as the
        models trained here. Not of unigram models: Viterbi breaks ties between equal segmentations of
        a run of spaces differently at different offsets.
        """
        newline = self._processor.piece_to_id("\n")
        normalizer, trainer = model.normalizer_spec, model.trainer_spec
        if (trainer.model_type not in (trainer.BPE, trainer.CHAR) or normalizer.name != "identity"
                or normalizer.add_dummy_prefix or normalizer.remove_extra_whitespaces or newline == UNK_ID
                or pieces.count("\n") != self.vocab_size):  # the joins and "\n" itself: no piece else has one
            return None
        return newline

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, in sentencepiece's batch call and line by line where that is exact.

        Sentencepiece slows down on long inputs (3x on a 1 MB text), so lines are encoded apart.
        """
        if self._newline_id is None:
            return self._processor.encode(list(texts))
        lines = iter(self._processor.encode([line for text in texts for line in text.split("\n")]))
        encoded = []
        for text in texts:
            ids = list(next(lines))
            for _ in range(text.count("\n")):
                ids.append(self._newline_id)
                ids.extend(next(lines))
            encoded.append(ids)
        return encoded

    def _chunks_split(self, pieces: str) -> bool:
        """Whether encoding each chunk of a text apart and joining the ids equals encoding the text.

        True where `_newline_splits` is and no piece holds a space ("▁") after anything but spaces: then no
        piece spans the start of a run of spaces, and BPE's merges, which never make a piece the vocabulary
        lacks, never cross a chunk's edge. Natural text repeats its words, so chunks are cached.
        """
        if self._newline_id is None:
            return False
        # `pieces` is newline-joined, and past `_newline_splits` no piece but "\n" itself holds a newline.
        return _SPACE_AFTER_OTHER.search(pieces) is None

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` back to back: (ids [T] int32, each text's id count [N] int64).

        Where chunks encode apart (`_chunks_split`), each distinct chunk goes through sentencepiece once and
        is then copied from a cache: 2.5x faster than `encode_batch` on tiny-shakespeare, cold (more once warm).
        """
        if self._chunk_cache is None:
            return super().encode_flat(texts)
        encoded = [text.encode("utf-8") for text in texts]
        text_starts = np.cumsum([0] + [len(e) for e in encoded])  # [N + 1] byte offsets
        data = b"".join(encoded)
        chunk_starts = _chunk_starts(np.frombuffer(data, np.uint8), text_starts[:-1])
        ids, chunk_lengths = self._chunk_cache.lookup(data, chunk_starts, self._processor.encode)
        # Chunks never cross texts, so a text's ids end where its last chunk's do.
        chunk_ends = np.searchsorted(chunk_starts, text_starts[1:])
        token_ends = np.concatenate([[0], np.cumsum(chunk_lengths)])[chunk_ends]
        return ids, np.diff(token_ends, prepend=0)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: pad skipped, other specials and out-of-vocabulary ids shown as their names."""
        ids = [int(i) if 0 <= int(i) < self.vocab_size else UNK_ID for i in ids]
        parts = []
        for special, group in itertools.groupby(ids, key=self.special_ids.__contains__):
            if special:
                parts.extend(SPECIAL_PIECES[i] for i in group if i != PAD_ID)
            else:
                parts.append(self._processor.decode(list(group)))
        return "".join(parts)

    def save(self, directory: str) -> str:
        """Writes `tokenizer.model` into `directory` and returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.FILENAME)
        pathlib.Path(path).write_bytes(self._processor.serialized_model_proto())
        return path

    def describe(self) -> str:
        """One line for logs: the kind, where the model came from and the vocabulary size."""
        return f"sentencepiece ({self._origin}), {self.vocab_size} pieces"


def _chunk_starts(data_B: np.ndarray, text_starts: np.ndarray) -> np.ndarray:
    """Byte offsets [C] int64 where the chunks of UTF-8 text `data_B` (uint8) begin, a chunk beginning
    at each of `text_starts` too.

    A chunk begins at each newline and after it, and where a space (" " or the 3 bytes of "▁") follows
    anything else; so the chunks are the regex's, found without a Python object per chunk.
    """
    newline = data_B == _NEWLINE_BYTE
    space = data_B == _SPACE_BYTE
    lead = np.flatnonzero((data_B[:-2] == _SPM_SPACE_BYTES[0]) & (data_B[1:-1] == _SPM_SPACE_BYTES[1])
                          & (data_B[2:] == _SPM_SPACE_BYTES[2]))
    for offset in range(3):
        space[lead + offset] = True
    begins = newline.copy()
    begins[1:] |= newline[:-1] | (space[1:] & ~space[:-1])
    begins[text_starts[text_starts < len(data_B)]] = True
    return np.flatnonzero(begins)


class _ChunkCache:
    """Chunk (UTF-8 bytes) -> its ids, stored back to back (chunk i's at flat[starts[i]:starts[i] + lengths[i]])."""

    def __init__(self):
        # A missing key gets the next free index on lookup, inside dict's C code: one pass over the distinct
        # chunks numbers the known and the new alike, with no Python per key.
        self._index: collections.defaultdict[bytes, int] = collections.defaultdict()
        self._index.default_factory = self._index.__len__
        self._flat = np.zeros(0, np.int32)
        self._starts = np.zeros(0, np.int64)
        self._lengths = np.zeros(0, np.int64)

    def lookup(self, data: bytes, chunk_starts: np.ndarray,
               encode: Callable[[list[bytes]], list[list[int]]]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the chunks of `data` that begin at `chunk_starts` [C], back to back [T] int32, ids per
        chunk [C] int64); `encode` encodes a list of chunks the cache does not hold."""
        if not len(chunk_starts):
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        # Arrow's hash table finds the distinct chunks in C++: a Python object per distinct chunk, not per chunk.
        offsets = pa.py_buffer(np.append(chunk_starts, len(data)).astype(np.int64))
        chunks = pa.Array.from_buffers(pa.large_binary(), len(chunk_starts), [None, offsets, pa.py_buffer(data)])
        distinct = chunks.dictionary_encode()
        slots = self._slots(distinct.dictionary.to_pylist(), encode)
        at = slots[distinct.indices.to_numpy()]
        gathered = self._gather(at)
        if len(self._index) > _CHUNK_CACHE_LIMIT:  # full: forget the newest, which are encoded again next time
            for key in list(itertools.islice(self._index, _CHUNK_CACHE_LIMIT, None)):
                del self._index[key]
            self._truncate(_CHUNK_CACHE_LIMIT)
        return gathered

    def _slots(self, distinct: list[bytes], encode: Callable[[list[bytes]], list[list[int]]]) -> np.ndarray:
        """Each distinct chunk's place in the cache [U] int64, new ones encoded and stored."""
        index = self._index
        known = len(index)
        if not known:  # all new: numbering them in one update is 2x faster than looking each one up
            index.update(zip(distinct, range(len(distinct))))
            slots = np.arange(len(distinct), dtype=np.int64)
        else:  # itemgetter looks the keys up in one C loop, faster than a map (a bare value for one key)
            slots = np.array(operator.itemgetter(*distinct)(index) if len(distinct) > 1 else [index[distinct[0]]],
                             np.int64)
        if len(index) > known:
            new = list(itertools.islice(index, known, None))  # dicts keep insertion order
            try:
                self._add(encode(new))
            except BaseException:  # the index must never name a chunk that has no ids
                for key in new:
                    del index[key]
                raise
        return slots

    def _add(self, encoded: list[list[int]]) -> None:
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        starts = len(self._flat) + np.cumsum(lengths) - lengths
        self._flat = np.concatenate([self._flat, np.fromiter(itertools.chain.from_iterable(encoded), np.int32,
                                                             int(lengths.sum()))])
        self._starts = np.concatenate([self._starts, starts])
        self._lengths = np.concatenate([self._lengths, lengths])

    def _truncate(self, size: int) -> None:
        """Keeps the stored ids of the first `size` chunks (the caller trims the index)."""
        self._flat = self._flat[:self._starts[size]].copy()
        self._starts, self._lengths = self._starts[:size], self._lengths[:size]

    def _gather(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = self._lengths[chunk_ids]
        out_starts = np.cumsum(lengths) - lengths
        # Id k of the output is id (k - out_start) of its chunk, found at starts[chunk] + that offset.
        source = np.repeat(self._starts[chunk_ids] - out_starts, lengths) + np.arange(int(lengths.sum()))
        return self._flat[source], lengths


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


def build_tokenizer(config: ml_collections.ConfigDict, source: Source, workdir: str | None = None) -> Tokenizer:
    """The tokenizer `config.data.tokenizer` names: loaded from its path, else trained on `source`.

    A trained tokenizer is cached in `<workdir>/tokenizer/` beside `settings.json` (kind, training
    settings and the source's identity) and reused while both match. It does not depend on
    `config.seed`, so runs that differ only in seed share one tokenization and comparable losses.
    """
    spec = config.data.tokenizer
    if spec.kind not in ("char", "sentencepiece"):
        raise DataError(f"config.data.tokenizer.kind={spec.kind!r}: must be 'char' or 'sentencepiece'")
    kind = CharTokenizer if spec.kind == "char" else SentencePieceTokenizer
    if spec.path:
        return kind.load(spec.path)

    max_documents = config.data.max_documents
    settings = {"version": _CACHE_VERSION, "kind": spec.kind, "source": source.identity,
                "max_documents": max_documents}
    if spec.kind == "sentencepiece":
        settings.update(model_type=spec.model_type, vocab_size=spec.vocab_size, max_sentences=spec.max_sentences)
    cache = os.path.join(workdir, "tokenizer") if workdir else None
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
        raise DataError(f"{source.field}: holds no text (not one non-empty document) to train a tokenizer on; "
                        "point it at data that holds text")
    documents = itertools.chain([first], documents)
    if spec.kind == "char":
        tokenizer = CharTokenizer.train(documents)
    else:
        tokenizer = SentencePieceTokenizer.train(documents, spec.vocab_size, spec.model_type,
                                                 max_sentences=spec.max_sentences)
    if cache:
        _write_cache(cache, tokenizer, settings)
        log.info("Trained the tokenizer (%s) and cached it in %s", tokenizer.describe(), cache)
    return tokenizer
