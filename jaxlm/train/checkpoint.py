"""Orbax checkpoints in <workdir>/checkpoints: save in the background, restore the newest good one.

A checkpoint holds three items: `params` and `opt_state` (sharded arrays, restored onto whatever mesh
the new run has) and `meta` (JSON: step counters, the config, the data's identity and the tokenizer
file itself, so a checkpoint directory is enough to export or continue a run). A step directory
counts only when Orbax finished it and wrote its commit marker; a newest checkpoint that fails to
restore is reported and the one before it is used.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

_COMMIT_MARKER = "commit_success.txt"
_ITEMS = ("params", "opt_state", "meta")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or used; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored checkpoint: its step, the arrays, and the JSON metadata saved beside them."""

    step: int
    params: dict
    opt_state: object
    meta: dict


def checkpoint_dir(path: str) -> str:
    """The checkpoints directory of a workdir (its config's checkpoint.directory, else
    <workdir>/checkpoints), or `path` itself when it already is one."""
    config_file = epath.Path(path) / "config.json"
    if config_file.exists():
        elsewhere = json.loads(config_file.read_text()).get("checkpoint", {}).get("directory")
        if elsewhere:
            return elsewhere
    nested = os.path.join(path, "checkpoints")
    return nested if epath.Path(nested).exists() else path


def tokenizer_record(path: str) -> dict:
    """The tokenizer file as the checkpoint stores it: name, sha256 and the bytes (base64)."""
    content = epath.Path(path).read_bytes()
    return {"file": os.path.basename(path), "sha256": hashlib.sha256(content).hexdigest(),
            "content_b64": base64.b64encode(content).decode("ascii")}


class Checkpointer:
    """Saves and restores a run's state under `directory`, keeping the newest `keep` (+ every Mth)."""

    def __init__(self, directory: str, config: ml_collections.ConfigDict, *, read_only: bool = False):
        # Orbax wants absolute paths; a relative --workdir is the common case on a laptop.
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self._last_save: int | None = None
        if read_only:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0,
                                                   enable_async_checkpointing=False)
        else:
            options = ocp.CheckpointManagerOptions(max_to_keep=config.keep,
                                                   keep_period=config.keep_every or None,
                                                   enable_async_checkpointing=config.async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())

    def complete_steps(self) -> list[int]:
        """Steps whose checkpoint Orbax finished and marked committed, newest first."""
        return sorted((step for step in self._manager.all_steps()
                       if (epath.Path(self.directory) / str(step) / _COMMIT_MARKER).exists()),
                      reverse=True)

    def save(self, step: int, params: dict, opt_state, meta: dict) -> None:
        """Starts writing step's checkpoint; returns once the arrays are copied off the devices."""
        args = ocp.args.Composite(params=ocp.args.StandardSave(params),
                                  opt_state=ocp.args.StandardSave(opt_state),
                                  meta=ocp.args.JsonSave(meta))
        self._last_save = step
        try:
            self._manager.save(step, args=args, force=True)
        except Exception as error:  # Orbax raises many kinds; any of them means this save failed.
            raise self._save_error(step, error) from error

    def wait(self) -> None:
        """Blocks until the last save is on disk; raises CheckpointError if it failed."""
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            raise self._save_error(self._last_save, error) from error

    def _save_error(self, step, error: Exception) -> CheckpointError:
        kept = self.complete_steps()
        older = f"older checkpoints are intact (newest: step {kept[0]})" if kept else "no older checkpoint"
        return CheckpointError(f"saving the checkpoint of step {step} in {self.directory} failed "
                               f"({type(error).__name__}: {error}); {older}. Check free disk space "
                               "and write permission, then run the same command again.")

    def restore_newest(self, abstract_params, abstract_opt_state, *,
                       report: Callable[[str], None]) -> Restored | None:
        """The newest checkpoint that restores, onto the shardings of the abstract trees; None if none.

        A step that Orbax left without a commit marker, or whose files fail to read, is reported
        and skipped. Raises CheckpointError when checkpoints exist but none restores.
        """
        skipped = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            if not (epath.Path(self.directory) / str(step) / _COMMIT_MARKER).exists():
                skipped.append(step)
                report(f"checkpoint {step} has no commit marker ({_COMMIT_MARKER}): an unfinished "
                       "save; skipping it")
                continue
            try:
                restored = self.restore(step, abstract_params, abstract_opt_state)
            except Exception as error:  # truncated or unreadable files: fall back to an older step
                skipped.append(step)
                report(f"checkpoint {step} cannot be restored ({_cause(error)}); trying an older one")
                continue
            for bad in skipped:
                report(f"checkpoint {bad} moved to {self._set_aside(bad)} (kept for inspection; the run "
                       "will write that step afresh)")
            return restored
        if skipped:
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be restored (tried steps "
                f"{', '.join(map(str, skipped))}); move that directory away to start afresh")
        return None

    def _set_aside(self, step: int) -> str:
        """Moves a bad step directory out of Orbax's sight, next to the checkpoints directory."""
        target = epath.Path(self.directory).parent / "bad_checkpoints" / f"{step}-{now_iso()}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (epath.Path(self.directory) / str(step)).rename(target)
        self._manager.reload()
        return str(target)

    def restore(self, step: int, abstract_params, abstract_opt_state=None) -> Restored:
        """Step's checkpoint onto the abstract trees' shardings (opt_state skipped when None)."""
        items = {"params": ocp.args.StandardRestore(abstract_params), "meta": ocp.args.JsonRestore()}
        if abstract_opt_state is not None:
            items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(step=step, params=restored.params,
                        opt_state=restored["opt_state"] if abstract_opt_state is not None else None,
                        meta=restored.meta)

    def newest_meta(self) -> tuple[int, dict] | None:
        """(step, meta) of the newest committed checkpoint, read alone (no arrays); None if none reads."""
        for step in sorted(self._manager.all_steps(), reverse=True):
            if (epath.Path(self.directory) / str(step) / _COMMIT_MARKER).exists():
                try:
                    meta_only = ocp.args.Composite(meta=ocp.args.JsonRestore())
                    return step, self._manager.restore(step, args=meta_only).meta
                except Exception:  # restore_newest reports an unreadable step and falls back
                    return None
        return None

    def saved_params_shapes(self, step: int) -> dict:
        """The saved params as a tree of ShapeDtypeStructs (no sharding), read from the metadata."""
        tree = self._manager.item_metadata(step).params.tree
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)

    def close(self) -> None:
        self._manager.close()


def _handlers() -> dict:
    return {"params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler()}


def restore_params(path: str, step: int | None = None, shardings: dict | None = None
                   ) -> tuple[ml_collections.ConfigDict, dict, int]:
    """(the run's config, its float32 params, the step) from a workdir or checkpoints directory.

    Runs in one process on one device by default, whatever mesh the checkpoint was saved on; pass
    `shardings` (a tree like the params) to place the arrays on a mesh instead. `step` None = the
    newest complete checkpoint.
    """
    directory = checkpoint_dir(path)
    if not epath.Path(directory).exists():
        raise CheckpointError(f"no checkpoints at {path}: expected a run's workdir or its "
                              "checkpoints directory")
    checkpointer = Checkpointer(directory, _read_only_config(), read_only=True)
    steps = checkpointer.complete_steps()
    if not steps:
        raise CheckpointError(f"{directory} holds no complete checkpoint")
    if step is None:
        step = steps[0]
    elif step not in steps:
        raise CheckpointError(f"{directory} has no complete checkpoint at step {step}; it has "
                              f"{', '.join(map(str, sorted(steps)))}")
    try:
        with reading_step(directory, step, steps):
            shapes = checkpointer.saved_params_shapes(step)
        device = jax.local_devices()[0]
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            shapes, shardings if shardings is not None
            else jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes))
        with reading_step(directory, step, steps):
            restored = checkpointer.restore(step, abstract)
    finally:
        checkpointer.close()
    config = ml_collections.ConfigDict(json.loads(restored.meta["config"]))
    return config, jax.tree.map(np.asarray, restored.params) if shardings is None else restored.params, step


@contextlib.contextmanager
def reading_step(directory: str, step: int, steps: list[int], *,
                 restore_from: bool = False) -> Iterator[None]:
    """Whatever Orbax raises while reading committed `step` (missing, truncated or foreign files) becomes
    one CheckpointError naming the step, the cause and the older steps to use instead.

    `restore_from`: that reader always takes the newest step, so the way to an older one is to move this
    one aside; otherwise the caller can name a step.
    """
    try:
        yield
    except Exception as error:  # Orbax raises many kinds
        older = [s for s in steps if s < step]
        if not older:
            hint = "there is no older complete checkpoint to use instead"
        elif restore_from:
            hint = f"move {directory}/{step} out of that folder to start from step {older[0]}"
        else:
            hint = (f"choose an older complete step ({', '.join(map(str, older))}; --step=N in python -m "
                    "jaxlm.export and jaxlm.generate)")
        raise CheckpointError(f"checkpoint {step} in {directory} cannot be read ({_cause(error)}); "
                              f"{hint}") from error


def _cause(error: Exception) -> str:
    """`Type: first line of the message`, short enough for a one-line report."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else 'no detail'}"


def _read_only_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"keep": 1, "keep_every": 0, "async_save": False})


def now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
