"""Where documents come from: the built-in corpus and local text or JSONL files (TFDS: tfds_source.py).

Every source is read afresh by `documents()` (a generator, so a large corpus streams) and carries a
cheap `identity` (paths with sizes and mtimes, a TFDS name and version, ...) that keys the caches
in the workdir. Undecodable bytes are replaced with U+FFFD and counted in `replaced`, never fatal; a file
with more than `BINARY_SHARE` of them is named in a warning of its own (it is most likely not text).
"""

from __future__ import annotations

import abc
import glob
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence

from jaxlm.data.errors import DataError

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")
SOURCES = ("builtin", "text", "jsonl", "tfds")  # config.data.source; select.py opens each
DOCUMENT_UNITS = ("file", "line", "paragraph")
# Above this share of undecodable sequences per byte, a file is warned about on a line of its own: text with a
# stray bad byte stays a count in the data summary, but a binary file (a .so: 3%, random bytes: 40%) trains
# silently on noise otherwise.
BINARY_SHARE = 0.01


class Source(abc.ABC):
    """Documents from one place; `field` names the config setting that chose it, for error messages."""

    field: str
    identity: dict
    replaced: int = 0  # Undecodable byte sequences replaced in the last read.

    @abc.abstractmethod
    def documents(self) -> Iterator[str]:
        """Every non-empty document, in a fixed order."""

    def describe(self) -> str:
        """One line for logs."""
        return self.field


class ListSource(Source):
    """Documents held in memory (the built-in corpus, tests)."""

    def __init__(self, documents: Sequence[str], field: str, name: str = "documents in memory"):
        self._documents = documents
        self.field, self._name = field, name
        digest = hashlib.sha256()
        for document in documents:
            data = document.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little") + data)
        self.identity = {"kind": "list", "sha256": digest.hexdigest()}

    def documents(self) -> Iterator[str]:
        """The non-empty documents, in order."""
        return (document for document in self._documents if document)

    def describe(self) -> str:
        """What the documents are."""
        return self._name


def builtin_documents() -> list[str]:
    """CPython's reference documentation shipped in the stdlib (pydoc_data), one document per topic."""
    # Imported here so that runs on other sources never pay for the 465 KB module.
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def _matching_files(pattern: str, field: str) -> list[str]:
    path = os.path.expanduser(pattern)
    if _GLOB_CHARS.isdisjoint(path):
        if os.path.isdir(path):
            why = f"is a directory; give a file or a glob such as '{os.path.join(pattern, '*.txt')}'"
        elif not os.path.isfile(path):
            why = "no such file; give an existing file or a glob such as 'texts/*.txt'"
        else:
            return [path]
        raise DataError(f"{field}={pattern!r}: {why}")
    files = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    if not files:
        raise DataError(
            f"{field}={pattern!r}: the glob matches no file; check the pattern (use '**' to search subfolders)"
        )
    return files


class _FileSource(Source):
    """Files a path or glob names (`~` expanded), read in path order."""

    def __init__(self, pattern: str, field: str, kind: str, **settings):
        self.pattern = pattern
        self.field = f"{field}={pattern!r}"
        self.files = _matching_files(pattern, field)
        self._warned: set[str] = set()  # files whose undecodable bytes were reported
        self._bytes = 0  # bytes decoded in the current read, to weigh `replaced` against
        stats = [os.stat(path) for path in self.files]
        self.identity = {
            "kind": kind,
            **settings,
            "files": [[os.path.abspath(path), stat.st_size, stat.st_mtime_ns] for path, stat in zip(self.files, stats)],
        }

    def describe(self) -> str:
        """How many files the pattern matched."""
        return f"{len(self.files)} file(s) at {self.pattern}"

    def _decode(self, raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace")
        self._bytes += len(raw)
        # Valid U+FFFD characters in the file decode to themselves; only the excess are replacements.
        self.replaced += text.count("\ufffd") - raw.count("\ufffd".encode())
        return text

    def _lines(self, path: str) -> Iterator[tuple[int, str]]:
        """(line number, text without its line break) of each line of `path`."""
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                yield number, self._decode(raw).rstrip("\r\n")

    def documents(self) -> Iterator[str]:
        """Every non-empty document of every file, in path order."""
        self.replaced = 0
        for path in self.files:
            replaced, read = self.replaced, self._bytes
            yield from self._file_documents(path)
            if self.replaced > replaced and path not in self._warned:  # once, not on every pass over the file
                self._warned.add(path)
                self._report(path, self.replaced - replaced, self._bytes - read)

    def _report(self, path: str, replaced: int, read: int) -> None:
        """A warning line for a file that looks binary; below the share, an info note only (the data summary
        counts the replacements). A replaced sequence is one or more bytes, so the share is a lower bound."""
        share = replaced / max(read, 1)
        if share > BINARY_SHARE:
            log.warning(
                "%s: at least %s of its %s bytes (%.1f%%) are not UTF-8 and were replaced with U+FFFD: it looks "
                "like a binary file, not text; check %s",
                path,
                f"{replaced:,}",
                f"{read:,}",
                100 * share,
                self.field,
            )
        else:
            log.info("%s: %d undecodable byte sequence(s) replaced with U+FFFD", path, replaced)

    @abc.abstractmethod
    def _file_documents(self, path: str) -> Iterator[str]:
        """The documents of one file, in order."""


class TextSource(_FileSource):
    """UTF-8 text files; a document is a whole file, a line, or a paragraph (lines between blank lines)."""

    def __init__(self, pattern: str, unit: str = "file", field: str = "config.data.path"):
        if unit not in DOCUMENT_UNITS:
            raise DataError(f"config.data.document={unit!r}: must be one of {', '.join(DOCUMENT_UNITS)}")
        super().__init__(pattern, field, "text", unit=unit)
        self.unit = unit

    def _file_documents(self, path: str) -> Iterator[str]:
        if self.unit == "file":
            with open(path, "rb") as f:
                text = self._decode(f.read())
            if text:
                yield text
            return
        paragraph: list[str] = []
        for _, line in self._lines(path):
            blank = not line.strip()
            if self.unit == "line":
                if not blank:
                    yield line
            elif blank:
                if paragraph:
                    yield "\n".join(paragraph)
                paragraph = []
            else:
                paragraph.append(line)
        if paragraph:
            yield "\n".join(paragraph)


class JsonlSource(_FileSource):
    """JSON Lines files: each non-blank line an object whose `text_field` holds one document."""

    def __init__(self, pattern: str, text_field: str = "text", field: str = "config.data.path"):
        super().__init__(pattern, field, "jsonl", text_field=text_field)
        self.text_field = text_field

    def records(self, path: str) -> Iterator[tuple[int, object]]:
        """(line number, JSON value) of each non-blank line of one file; a line that is not JSON is a DataError
        naming the file and line."""
        for number, line in self._lines(path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(
                    f"{path}:{number}: not valid JSON ({e}); each line of a JSONL file must be one JSON object"
                ) from e
            yield number, record

    def _file_documents(self, path: str) -> Iterator[str]:
        for number, record in self.records(path):
            text = record.get(self.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                keys = ", ".join(map(repr, record)) if isinstance(record, dict) else type(record).__name__
                raise DataError(
                    f"{path}:{number}: no string field config.data.text_field={self.text_field!r} "
                    f"(found {keys}); set data.text_field to the field that holds the text"
                )
            if text:
                yield text
