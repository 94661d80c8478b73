"""The one error the export room raises: a message naming the file, field or parameter, and what to do."""


class ExportError(ValueError):
    """Input that cannot be converted (missing file, unsupported architecture, shape mismatch)."""
