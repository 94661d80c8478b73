"""python -m jaxlm.export: a run's checkpoint to a Hugging Face folder, or a Hugging Face folder to a run.

    python -m jaxlm.export --workdir=runs/default [--step=N] [--params=ema] --out=hf/default
    python -m jaxlm.export --from_hf=hf/default --out=runs/imported

Bad input is one line naming the problem on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxlm import cli

DEFAULT_MAX_SHARD_MB = 5 * 1024  # Hugging Face's own default shard size


def _flags() -> flags.FlagValues:
    fv = cli.command_flags()
    flags.DEFINE_string(
        "workdir", None, "A jaxlm run to export (its --workdir, or its checkpoints directory).", flag_values=fv
    )
    flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest).", flag_values=fv)
    flags.DEFINE_enum(
        "params",
        "raw",
        ["raw", "ema"],
        "raw: the parameters as trained; ema: their average (runs trained with train.ema_decay > 0).",
        flag_values=fv,
    )
    flags.DEFINE_string("from_hf", None, "A Hugging Face model folder to import instead.", flag_values=fv)
    flags.DEFINE_string(
        "out",
        None,
        "The Hugging Face folder (export) or the run's workdir (import) to write.",
        flag_values=fv,
        required=True,
    )
    flags.DEFINE_float(
        "max_shard_mb",
        DEFAULT_MAX_SHARD_MB,
        "Split the weights into files of at most this many MiB, with an index file.",
        flag_values=fv,
        lower_bound=1e-3,
    )
    return fv


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line on `argv` (without the program name); returns the exit status."""
    fv = _flags()
    cli.parse(fv, ["jaxlm.export", *argv], usage=__doc__)
    if (fv.workdir is None) == (fv.from_hf is None):
        cli.fail("give exactly one of --workdir (export a run) and --from_hf (import)")
    if "://" not in fv.out and os.path.exists(fv.out) and not os.path.isdir(fv.out):
        cli.fail(f"--out={fv.out} is a file, not a folder; give a folder (it is created if missing)")
    import jax  # after the flags: --help and bad flags answer without loading JAX

    jax.config.update("jax_platforms", "cpu")  # conversion needs no accelerator, and a pod's may be busy
    from jaxlm.export.errors import ExportError
    from jaxlm.export.hf_import import import_hf
    from jaxlm.export.run_export import export_run
    from jaxlm.runs.checkpoint import CheckpointError

    try:
        if fv.workdir is not None:
            print(export_run(fv.workdir, fv.step, fv.out, int(fv.max_shard_mb * 2**20), params=fv.params))
        else:
            print(import_hf(fv.from_hf, fv.out))
    except (ExportError, CheckpointError) as error:
        cli.fail(str(error))
    except ModuleNotFoundError as error:  # safetensors, tokenizers: the optional [hf] extra
        cli.fail(cli.missing_extra(error, "hf", "python -m jaxlm.export"))
    except OSError as error:  # an unwritable --out, a full disk: name the file, keep the traceback out
        cli.fail(
            f"{error.filename or fv.out}: {error.strerror or error}; check the path and free space and run "
            "the same command again"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
