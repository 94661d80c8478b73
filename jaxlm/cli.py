"""What every jaxlm command line shares: absl flags, `--help` that exits 0, and one-line errors.

Each command defines its flags on a FlagValues of its own (`command_flags`), so several commands can
run in one process (the tests call their `main(argv)`) without clashing in absl's global registry, and
parses them with `parse`: a bad flag or value, an unexpected argument, or a recipe file that cannot be
read is one line on stderr and exit status 2; `--help` prints the command's use and flags on stdout
and exits 0, before anything heavy is imported. Commands that take a recipe (`--config=configs/X.py`
and `--config.FIELD=VALUE` overrides) define it with `define_recipe`.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import flags, logging
from ml_collections import config_flags

HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "--helpfull", "-?")
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A flag, argument or file the command cannot use; the message says which and what to do."""


def command(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """A command's `main(argv) -> exit status`, with BadInput printed as `error: ...` and exit status 2."""

    @functools.wraps(main)
    def run(argv: list[str]) -> int:
        _cpu_when_no_accelerator()
        try:
            return main(argv)
        except BadInput as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


# Device files of the accelerators JAX drives: NVIDIA and AMD GPUs, TPUs (v2-v5e: accel, v5p and later: vfio).
_ACCELERATOR_DEVICES = ("/dev/nvidia*", "/dev/kfd", "/dev/dxg", "/dev/accel*", "/dev/vfio/[0-9]*")


def _cpu_when_no_accelerator() -> None:
    """On a machine with no accelerator, JAX_PLATFORMS=cpu unless set: otherwise an installed libtpu (the
    `tpu` extra, for `jaxlm.aot`) probes for a TPU at JAX's start and prints a dozen lines of errors."""
    if "JAX_PLATFORMS" not in os.environ and not any(glob.glob(pattern) for pattern in _ACCELERATOR_DEVICES):
        os.environ["JAX_PLATFORMS"] = "cpu"


def command_flags() -> flags.FlagValues:
    """An empty set of flags for one command."""
    return flags.FlagValues()


def fail(message: str) -> NoReturn:
    """Stops the command with `error: message` on stderr and exit status 2 (see `command`)."""
    raise BadInput(message)


def missing_extra(error: ModuleNotFoundError, extra: str, what: str) -> str:
    """The sentence for an optional dependency that is not installed: which package, and which extra has it."""
    return (
        f"{what} needs the Python package {error.name!r}, which jaxlm's optional [{extra}] extra installs: "
        f'pip install -e ".[{extra}]" (from the checkout)'
    )


def define_recipe(flag_values: flags.FlagValues, argv: Sequence[str], default: str | None) -> None:
    """`--config=RECIPE.py` and its `--config.FIELD=VALUE` overrides, read from `argv` (argv[0] the program)."""
    try:  # config_flags reads a default recipe and its overrides here already
        config_flags.DEFINE_config_file(
            "config",
            default,
            "Recipe file (configs/*.py); override any field with --config.FIELD=VALUE (every field: jaxlm/config.py).",
            flag_values=flag_values,
            sys_argv=list(argv),
        )
    except Exception as error:  # whatever a broken recipe file or override raises
        _recipe_error(error, argv)


def parse(
    flag_values: flags.FlagValues, argv: Sequence[str], *, usage: str, positional: Sequence[str] = ()
) -> list[str]:
    """Parses `argv` (argv[0] the program) into `flag_values`; returns the positional arguments.

    `usage` opens the `--help` text; `positional` names the arguments the command takes besides flags,
    in order (all required).
    """
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print(usage.strip() + "\n\nflags:\n" + flag_values.get_help(include_special_flags=False))
        sys.exit(0)
    try:
        rest = flag_values(list(argv))[1:]
        if "config" in flag_values:
            flag_values.config.to_dict()  # config_flags loads the recipe lazily: fail here, not mid-run
    except flags.Error as error:
        required = re.search(r"Flag --(\w+) must have a value other than None", str(error))
        fail(f"--{required[1]} is required; see --help" if required else f"{_sentence(str(error))}; see --help")
    except Exception as error:  # whatever a broken recipe file or override raises
        if "config" not in flag_values:
            raise
        _recipe_error(error, argv)
    if len(rest) != len(positional):
        wanted = " ".join(name.upper() for name in positional) or "no arguments besides flags"
        got = " ".join(rest) or "none"
        fail(f"expected {wanted}, got {got}; see --help")
    # absl logs before its global flags are parsed with a warning on every line; ours are parsed.
    flags.FLAGS.mark_as_parsed()
    logging.set_verbosity(logging.WARNING)  # Orbax reports every step of a save at INFO
    return rest


def _sentence(text: str) -> str:
    return " ".join(text.split())


def _recipe_error(error: Exception, argv: Sequence[str]) -> NoReturn:
    """One line naming the recipe or override that config_flags could not read, and what to do."""
    text = str(error)
    overrides = [arg[2:].split("=", 1)[0].removeprefix("config.") for arg in argv if arg.startswith("--config.")]
    # config_flags names a field an override sets that the recipe lacks, quoted, and may suggest another.
    unknown = next((field for field in overrides if f"'{field.rsplit('.', 1)[-1]}" in text), None)
    if isinstance(error, (AttributeError, KeyError)) and unknown:
        suggestion = re.search(r'Did you mean "(\w+)"', text)
        parent = unknown.rsplit(".", 1)[0] + "." if "." in unknown else ""
        hint = f"; did you mean {parent}{suggestion[1]}?" if suggestion else ""
        fail(f"--config.{unknown}: the recipe has no field {unknown}{hint} (every field is in jaxlm/config.py)")
    missing = re.search(r"No such file or directory: '([^']+)'", text)
    if missing:
        fail(f"--config={missing[1]}: no such recipe file; give one such as configs/default.py")
    fail(
        f"--config: cannot read the recipe or an override ({type(error).__name__}: {_sentence(text)}); give a "
        "recipe file such as configs/default.py and overrides of its fields as --config.FIELD=VALUE"
    )
