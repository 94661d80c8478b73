"""The one error the data pipeline raises for problems a user fixes in the config or on disk."""


class DataError(ValueError):
    """The data the config points at cannot be used; the message names the field and what to do."""
