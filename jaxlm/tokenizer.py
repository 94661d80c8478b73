"""python -m jaxlm.tokenizer train: a sentencepiece tokenizer for jaxlm from any source, in bounded memory.

    python -m jaxlm.tokenizer train --input='corpus/*.txt' --vocab_size=32000 --model_type=unigram \
        --output=tokenizers/corpus32k
    python run_pretrain.py --config.data.tokenizer.path=tokenizers/corpus32k/tokenizer.model ...

--input is a file or glob (--format says what a document is, or that the files are JSONL), `builtin`, or
`tfds:NAME` (with --split and --data_dir). At most --max_sentences lines, sampled uniformly in one pass,
reach the trainer. The model has jaxlm's fixed specials (pad, unk, <s>, </s>, <mask> at 0..4; <s> and
</s> serve as BERT's [CLS] and [SEP]) and byte fallback. Exit status 2 for bad input.
"""

from __future__ import annotations

import itertools
import sys

from absl import flags

from jaxlm import cli
from jaxlm.config import base_config
from jaxlm.data.errors import DataError
from jaxlm.data.select import train_source
from jaxlm.data.sentencepiece_tokenizer import MAX_SENTENCES, SentencePieceTokenizer
from jaxlm.data.sources import DOCUMENT_UNITS
from jaxlm.data.tokenizer import MODEL_TYPES, SPECIAL_PIECES


def _flags() -> flags.FlagValues:
    fv = cli.command_flags()
    flags.DEFINE_string("input", None, "A file or glob, 'builtin', or 'tfds:NAME'.", flag_values=fv, required=True)
    flags.DEFINE_enum(
        "format",
        "file",
        [*DOCUMENT_UNITS, "jsonl"],
        "For files: a document is a file, a line or a paragraph, or the files are JSONL.",
        flag_values=fv,
    )
    flags.DEFINE_string("text_field", "text", "JSONL field or TFDS feature holding the text.", flag_values=fv)
    flags.DEFINE_string("split", "train", "TFDS split.", flag_values=fv)
    flags.DEFINE_string("data_dir", "", "TFDS data_dir (empty = TFDS's default).", flag_values=fv)
    flags.DEFINE_integer(
        "vocab_size", None, "Pieces, specials and 256 bytes included.", flag_values=fv, required=True, lower_bound=1
    )
    flags.DEFINE_enum("model_type", "bpe", list(MODEL_TYPES), "Sentencepiece's algorithm.", flag_values=fv)
    flags.DEFINE_integer("max_sentences", MAX_SENTENCES, "Lines sampled for training.", flag_values=fv, lower_bound=1)
    flags.DEFINE_integer(
        "max_documents", 0, "Read at most this many documents (0 = all).", flag_values=fv, lower_bound=0
    )
    flags.DEFINE_integer("seed", 0, "Seeds the sample of lines.", flag_values=fv)
    flags.DEFINE_string("output", None, "Folder to write tokenizer.model into.", flag_values=fv, required=True)
    return fv


def _data_section(fv: flags.FlagValues):
    """A run's `data` section naming the same source as the flags."""
    data = base_config().data
    if fv.input == "builtin":
        data.source = "builtin"
    elif fv.input.startswith("tfds:"):
        data.update(
            source="tfds",
            tfds_name=fv.input[len("tfds:") :],
            tfds_split=fv.split,
            tfds_data_dir=fv.data_dir,
            text_field=fv.text_field,
        )
    elif fv.format == "jsonl":
        data.update(source="jsonl", path=fv.input, text_field=fv.text_field)
    else:
        data.update(source="text", path=fv.input, document=fv.format)
    return data


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line on `argv` (without the program name); returns the exit status."""
    fv = _flags()
    [command] = cli.parse(fv, ["jaxlm.tokenizer", *argv], usage=__doc__, positional=("command",))
    if command != "train":
        cli.fail(f"unknown command {command!r}; the one command is: python -m jaxlm.tokenizer train --input=...")
    try:
        source = train_source(_data_section(fv))
        documents = itertools.islice(source.documents(), fv.max_documents or None)
        tokenizer = SentencePieceTokenizer.train(
            documents, fv.vocab_size, fv.model_type, seed=fv.seed, max_sentences=fv.max_sentences
        )
    except DataError as error:
        cli.fail(str(error))
    path = tokenizer.save(fv.output)
    specials = ", ".join(f"{piece}={i}" for i, piece in enumerate(SPECIAL_PIECES))
    print(
        f"wrote {path}: {tokenizer.describe()}, from {source.describe()}\n"
        f"specials {specials}; byte fallback on; sha256 {tokenizer.fingerprint}\n"
        f"use it with --config.data.tokenizer.path={path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
