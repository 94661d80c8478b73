"""Train a sentencepiece tokenizer for jaxlm from any source, in bounded memory.

    python -m jaxlm.tokenizer train --input='corpus/*.txt' --vocab_size=32000 --model_type=unigram \
        --output=tokenizers/corpus32k
    python run_pretrain.py --config.data.tokenizer.path=tokenizers/corpus32k/tokenizer.model ...

`--input` is a file or glob (`--format` says what a document is, or that the files are JSONL),
`builtin`, or `tfds:NAME` (with `--split` and `--data_dir`). At most `--max_sentences` lines, sampled
uniformly in one pass, reach the trainer. The model has jaxlm's fixed specials (pad, unk, <s>, </s>,
<mask> at 0..4; <s> and </s> serve as BERT's [CLS] and [SEP]) and byte fallback. Thin: the work is
in jaxlm.data.
"""

from __future__ import annotations

import argparse
import itertools
import sys

from jaxlm.config import base_config
from jaxlm.data.errors import DataError
from jaxlm.data.sources import train_source
from jaxlm.data.tokenizer import MAX_SENTENCES, MODEL_TYPES, SPECIAL_PIECES, SentencePieceTokenizer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxlm.tokenizer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a sentencepiece model and write tokenizer.model")
    train.add_argument("--input", required=True, help="a file or glob, 'builtin', or 'tfds:NAME'")
    train.add_argument("--format", default="file", choices=("file", "line", "paragraph", "jsonl"),
                       help="for files: a document is a file, a line or a paragraph, or the files are JSONL")
    train.add_argument("--text_field", default="text", help="JSONL field or TFDS feature holding the text")
    train.add_argument("--split", default="train", help="TFDS split")
    train.add_argument("--data_dir", default="", help="TFDS data_dir (empty = TFDS's default)")
    train.add_argument("--vocab_size", type=int, required=True, help="pieces, specials and 256 bytes included")
    train.add_argument("--model_type", default="bpe", choices=MODEL_TYPES)
    train.add_argument("--max_sentences", type=int, default=MAX_SENTENCES, help="lines sampled for training")
    train.add_argument("--max_documents", type=int, default=0, help="read at most this many documents (0 = all)")
    train.add_argument("--seed", type=int, default=0, help="seeds the sample of lines")
    train.add_argument("--output", required=True, help="folder to write tokenizer.model into")
    return parser


def _data_config(args: argparse.Namespace):
    """The `config.data` fields that name the same source as the flags."""
    config = base_config()
    data = config.data
    if args.input == "builtin":
        data.source = "builtin"
    elif args.input.startswith("tfds:"):
        data.update(source="tfds", tfds_name=args.input[len("tfds:"):], tfds_split=args.split,
                    tfds_data_dir=args.data_dir, text_field=args.text_field)
    elif args.format == "jsonl":
        data.update(source="jsonl", path=args.input, text_field=args.text_field)
    else:
        data.update(source="text", path=args.input, document=args.format)
    return config


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (2 for bad input)."""
    args = _parser().parse_args(argv)
    if args.vocab_size <= 0 or args.max_sentences <= 0 or args.max_documents < 0:
        print("error: --vocab_size and --max_sentences must be positive, --max_documents >= 0", file=sys.stderr)
        return 2
    try:
        source = train_source(_data_config(args))
        documents = itertools.islice(source.documents(), args.max_documents or None)
        tokenizer = SentencePieceTokenizer.train(documents, args.vocab_size, args.model_type, seed=args.seed,
                                                 max_sentences=args.max_sentences)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = tokenizer.save(args.output)
    specials = ", ".join(f"{piece}={i}" for i, piece in enumerate(SPECIAL_PIECES))
    print(f"wrote {path}: {tokenizer.describe()}, from {source.describe()}\n"
          f"specials {specials}; byte fallback on; sha256 {tokenizer.fingerprint}\n"
          f"use it with --config.data.tokenizer.path={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
