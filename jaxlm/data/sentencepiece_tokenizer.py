"""A sentencepiece tokenizer with jaxlm's fixed special ids: trained on a sample of the corpus, or loaded.

Models trained here normalize nothing, keep "\\n" as a piece and fall back to bytes, so any text
round-trips; encoding goes through `chunk_cache.ChunkCache` where chunks of text encode apart.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import pathlib
import re
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from jaxlm.data.chunk_cache import ChunkCache
from jaxlm.data.errors import DataError
from jaxlm.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    MODEL_TYPES,
    PAD_ID,
    SPECIAL_PIECES,
    UNK_ID,
    FixedSpecials,
    read_tokenizer_file,
)

# Bounds the sentencepiece trainer's memory on a large corpus (config.data.tokenizer.max_sentences).
MAX_SENTENCES = 1_000_000
# Sentencepiece skips sentences over 4192 bytes; 1024 characters are at most 4096 UTF-8 bytes.
_MAX_SENTENCE_CHARS = 1024
# Chunks, stretches of text no piece of a model trained here spans (SentencePieceTokenizer._chunks_split):
# a newline, or a run of spaces and the characters after it up to the next space or newline (the regex
# "\n|[ ▁]*[^ ▁\n]*"). U+2581 ("▁") counts as a space: sentencepiece writes spaces as it, so cannot tell
# the two apart. `_chunk_starts` finds them in UTF-8 bytes.
_SPACE_AFTER_OTHER = re.compile("[^\u2581\n]\u2581")  # in a piece: "▁" after something else than "▁"
_SPACE_BYTE, _NEWLINE_BYTE = 0x20, 0x0A
_SPM_SPACE_BYTES = tuple("\u2581".encode("utf-8"))  # E2 96 81


def _sentences(document: str) -> Iterator[str]:
    """The document's non-empty lines, cut into pieces sentencepiece does not skip as too long."""
    for line in document.split("\n"):
        for start in range(0, len(line), _MAX_SENTENCE_CHARS):
            yield line[start : start + _MAX_SENTENCE_CHARS]


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


class SentencePieceTokenizer(FixedSpecials):
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
        self._chunk_cache = ChunkCache() if self._chunks_split(pieces) else None

    @classmethod
    def train(
        cls,
        documents: Iterable[str],
        vocab_size: int,
        model_type: str = "bpe",
        seed: int = 0,
        max_sentences: int = MAX_SENTENCES,
    ) -> SentencePieceTokenizer:
        """A model of `vocab_size` pieces (specials included; for "char" at most that many) trained on a
        sample of at most `max_sentences` of the documents' lines."""
        if model_type not in MODEL_TYPES:
            raise DataError(f"config.data.tokenizer.model_type={model_type!r}: must be one of {', '.join(MODEL_TYPES)}")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(_sample_sentences(documents, max_sentences, seed)),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                # A char model has as many pieces as the sample has characters; vocab_size only caps it.
                hard_vocab_limit=model_type != "char",
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                # User-defined symbols take the next ids in order: <mask> lands at 4, "\n" at 5.
                user_defined_symbols=[SPECIAL_PIECES[MASK_ID], "\n"],
                byte_fallback=True,
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                allow_whitespace_only_pieces=True,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise DataError(
                f"config.data.tokenizer.vocab_size={vocab_size}: sentencepiece cannot train a "
                f"{model_type} model of this size on this corpus ({e}); pick a size it accepts "
                "or use more text"
            ) from e
        return cls(model.getvalue(), f"{model_type}, trained on this corpus")

    @classmethod
    def load(cls, path: str) -> SentencePieceTokenizer:
        """The sentencepiece `.model` at `path`, checked for the fixed special ids."""
        proto = read_tokenizer_file(path, "a sentencepiece .model file")
        return cls.from_bytes(proto, f"config.data.tokenizer.path={path!r}", origin=path)

    @classmethod
    def from_bytes(cls, proto: bytes, field: str, origin: str) -> SentencePieceTokenizer:
        """A model from its serialized proto, checked for the fixed special ids; `field` names the bytes'
        source in errors, `origin` in `describe`."""
        try:
            processor = spm.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as e:
            raise DataError(
                f"{field}: cannot load a sentencepiece model ({e}); give a .model file, or leave it empty to train one"
            ) from e
        found = (
            processor.pad_id(),
            processor.unk_id(),
            processor.bos_id(),
            processor.eos_id(),
            processor.piece_to_id(SPECIAL_PIECES[MASK_ID]),
        )
        if found != (PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID):
            raise DataError(
                f"{field}: the model must have pad=0, unk=1, bos=2, eos=3 and a user-defined '<mask>' "
                f"piece at 4, but has pad, unk, bos, eos, <mask> at {found} (-1 = none, 1 = "
                "unknown); train it with --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3 "
                "--user_defined_symbols=<mask>, or leave the path empty to train one here"
            )
        return cls(proto, origin)

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
        if (
            trainer.model_type not in (trainer.BPE, trainer.CHAR)
            or normalizer.name != "identity"
            or normalizer.add_dummy_prefix
            or normalizer.remove_extra_whitespaces
            or newline == UNK_ID
            or pieces.count("\n") != self.vocab_size
        ):  # the joins and "\n" itself: no piece else has one
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
        pathlib.Path(path).write_bytes(self.serialized())
        return path

    def serialized(self) -> bytes:
        """The model proto `save` writes."""
        return self._processor.serialized_model_proto()

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
    lead = np.flatnonzero(
        (data_B[:-2] == _SPM_SPACE_BYTES[0])
        & (data_B[1:-1] == _SPM_SPACE_BYTES[1])
        & (data_B[2:] == _SPM_SPACE_BYTES[2])
    )
    for offset in range(3):
        space[lead + offset] = True
    begins = newline.copy()
    begins[1:] |= newline[:-1] | (space[1:] & ~space[:-1])
    begins[text_starts[text_starts < len(data_B)]] = True
    return np.flatnonzero(begins)
