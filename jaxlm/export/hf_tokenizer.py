"""The run's tokenizer as Hugging Face tokenizer files (tokenizer.json + tokenizer_config.json).

The sentencepiece model jaxlm trains (identity normalisation, no dummy prefix, byte fallback, "\\n"
and "<mask>" as user-defined pieces) is rebuilt as a `tokenizers` BPE or Unigram model over the same
pieces and ids, so `AutoTokenizer` gives the ids jaxlm's tokenizer gives. A char tokenizer becomes a
one-character-per-token word-level model. bert adds <s> ... </s> around a text, as its training rows do.
Known differences: the literal texts "<s>", "</s>", "<pad>" and "<unk>" become their special ids in HF
(as in every HF tokenizer), where sentencepiece spells them out; and a unigram model may order two
pieces of exactly equal total score differently ("**" + "*****" or "*****" + "**"; the two libraries
break such ties differently). BPE (jaxlm's default) and char models give identical ids.
"""

from __future__ import annotations

import json
import os

from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.data.tokenizer import SPECIAL_PIECES, UNK_ID, Tokenizer
from jaxlm.export.errors import ExportError

SPACE = "\u2581"  # sentencepiece's visible space
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6  # ModelProto piece types
_SPM_UNIGRAM, _SPM_BPE, _SPM_CHAR = 1, 2, 4  # ModelProto model types


def _bpe_merges(pieces: list[str], normal: list[bool]) -> list[tuple[str, str]]:
    """Every split of a piece into two pieces, ranked by the piece's id (sentencepiece merges best score first)."""
    ids = {piece: i for i, piece in enumerate(pieces)}
    merges = []
    for i, piece in enumerate(pieces):
        if not normal[i]:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                merges.append((i, ids[left], ids[right], left, right))
    return [(left, right) for *_, left, right in sorted(merges)]


def _sentencepiece_model(tokenizer: SentencePieceTokenizer):
    """The `tokenizers` model of a jaxlm sentencepiece model, and its user-defined pieces."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import models

    origin = tokenizer.describe()  # names the model in errors
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(tokenizer.serialized())
    norm, trainer = proto.normalizer_spec, proto.trainer_spec
    settings = {
        "normalization_rule_name": (norm.name, "identity"),
        "add_dummy_prefix": (norm.add_dummy_prefix, False),
        "remove_extra_whitespaces": (norm.remove_extra_whitespaces, False),
        "escape_whitespaces": (norm.escape_whitespaces, True),
        "byte_fallback": (trainer.byte_fallback, True),
    }
    for name, (found, wanted) in settings.items():
        if found != wanted:
            raise ExportError(
                f"{origin}: sentencepiece {name}={found!r}; HF export supports the models jaxlm "
                f"trains ({name}={wanted!r}); let jaxlm train the tokenizer"
            )
    pieces = [p.piece for p in proto.pieces]
    types = [p.type for p in proto.pieces]
    if trainer.model_type in (_SPM_BPE, _SPM_CHAR):  # a char model is BPE without merges
        merges = _bpe_merges(pieces, [t == _NORMAL for t in types]) if trainer.model_type == _SPM_BPE else []
        model = models.BPE(
            {piece: i for i, piece in enumerate(pieces)},
            merges,
            unk_token=pieces[UNK_ID],
            byte_fallback=True,
            fuse_unk=True,
        )
    elif trainer.model_type == _SPM_UNIGRAM:
        model = models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=UNK_ID, byte_fallback=True)
    else:
        raise ExportError(
            f"{origin}: sentencepiece model type {trainer.model_type} is not supported (bpe, unigram, char)"
        )
    user_defined = [piece for piece, kind in zip(pieces, types) if kind == _USER_DEFINED]
    return model, user_defined


def build(ours: Tokenizer, family: str):
    """A `tokenizers.Tokenizer` equivalent to the jaxlm tokenizer `ours`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if isinstance(ours, SentencePieceTokenizer):
        model, user_defined = _sentencepiece_model(ours)
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.Replace(" ", SPACE)
        tokenizer.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    elif isinstance(ours, CharTokenizer):
        vocab = {piece: i for i, piece in enumerate([*SPECIAL_PIECES, *ours.chars])}
        tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_PIECES[UNK_ID]))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        tokenizer.decoder = decoders.Fuse()
        user_defined = []
    else:
        raise ExportError(f"{ours.describe()}: not a jaxlm tokenizer (sentencepiece or char)")
    # sentencepiece matches user-defined pieces ("<mask>", "\n") in raw text; HF added tokens do the same.
    tokenizer.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in SPECIAL_PIECES])
    tokenizer.add_tokens(
        [AddedToken(p, special=False, normalized=False) for p in user_defined if p not in SPECIAL_PIECES]
    )
    if family == "bert":
        bos, eos = SPECIAL_PIECES[2], SPECIAL_PIECES[3]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} $B:1 {eos}:1", special_tokens=[(bos, 2), (eos, 3)]
        )
    return tokenizer


def write(tokenizer: Tokenizer, out_dir: str, family: str, max_len: int) -> list[str]:
    """Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json (and jaxlm's own sentencepiece
    model, so an import continues with the same tokenizer); returns their names."""
    build(tokenizer, family).save(os.path.join(out_dir, "tokenizer.json"))
    pad, unk, bos, eos, mask = SPECIAL_PIECES
    special = {"pad_token": pad, "unk_token": unk, "bos_token": bos, "eos_token": eos, "mask_token": mask}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        # Causal models generate from the end of a batch, so pad prompts on the left.
        "padding_side": "right" if family == "bert" else "left",
    }
    for file_name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        with open(os.path.join(out_dir, file_name), "w") as f:
            json.dump(content, f, indent=2)
    written = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    if isinstance(tokenizer, SentencePieceTokenizer):
        tokenizer.save(out_dir)
        written.append(SentencePieceTokenizer.FILENAME)
    return written
