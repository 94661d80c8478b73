"""The one error export and import raise: a message naming the file, field or parameter, and what to do."""


class ExportError(ValueError):
    """Input that cannot be converted (missing file, unsupported architecture, shape mismatch)."""
