"""Where documents come from: the built-in offline corpus or local text files."""

from __future__ import annotations

import glob
import logging
import os
import pathlib

import ml_collections

from jaxlm.data.errors import DataError

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


def builtin_documents() -> list[str]:
    """CPython's reference documentation shipped in the stdlib (pydoc_data), one document per topic."""
    # Imported here so that runs on local files never pay for the 465 KB module.
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def _fail(pattern: str, why: str) -> DataError:
    return DataError(f"config.data.path={pattern!r}: {why}")


def _matching_files(pattern: str) -> list[str]:
    path = os.path.expanduser(pattern)
    if _GLOB_CHARS.isdisjoint(path):
        if os.path.isdir(path):
            raise _fail(pattern, f"is a directory; give a file or a glob such as '{os.path.join(pattern, '*.txt')}'")
        if not os.path.isfile(path):
            raise _fail(pattern, "no such file; give an existing text file or a glob such as 'texts/*.txt'")
        return [path]
    files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    if not files:
        raise _fail(pattern, "the glob matches no file; check the pattern (use '**' to search subfolders)")
    return files


def _read_utf8(path: str) -> str:
    raw = pathlib.Path(path).read_bytes()
    text = raw.decode("utf-8", errors="replace")
    # Valid U+FFFD characters in the file decode to themselves; only the excess are replacements.
    replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
    if replaced:
        log.warning("%s: %d undecodable byte sequence(s) replaced with U+FFFD (file is not valid UTF-8)",
                    path, replaced)
    return text


def read_text_files(pattern: str) -> list[str]:
    """Every file a path or glob names (`~` expanded), sorted by path, one document each, empty files skipped."""
    files = _matching_files(pattern)
    documents = [_read_utf8(path) for path in files]
    non_empty = [doc for doc in documents if doc]
    if not non_empty:
        raise _fail(pattern, f"all {len(files)} matching file(s) are empty; point it at files that hold text")
    if len(non_empty) < len(documents):
        log.info("config.data.path=%r: skipped %d empty file(s)", pattern, len(documents) - len(non_empty))
    return non_empty


def load_documents(config: ml_collections.ConfigDict) -> list[str]:
    """The documents `config.data.source` names: "builtin" or "text" (files at `config.data.path`)."""
    if config.data.source == "builtin":
        return builtin_documents()
    if config.data.source == "text":
        return read_text_files(config.data.path)
    raise DataError(f"config.data.source={config.data.source!r}: must be 'builtin' or 'text'")
