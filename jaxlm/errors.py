"""The error a bad run-config value raises, wherever it is found (config checks, the mesh, the trainer).

Apart from jaxlm/config.py so that packages low in the stack (jaxlm.parallel) can raise it without
importing the config table and what it reads its choices from.
"""


class ConfigError(ValueError):
    """A config field holds a value the run cannot use; the message names the field."""
