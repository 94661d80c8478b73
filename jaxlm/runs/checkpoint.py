"""Orbax checkpoints of a run: save in the background, restore the newest good one onto any mesh.

A checkpoint holds up to three items: `params` and `opt_state` (sharded arrays, restored onto whatever
mesh the new run has; a params-only checkpoint, such as an imported model, has no `opt_state`) and
`meta` (a `meta.CheckpointMeta` as JSON). A step directory counts only when Orbax finished it and wrote
its commit marker; a newest checkpoint that fails to restore is reported and the one before it is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from collections.abc import Callable, Iterator

import jax
import orbax.checkpoint as ocp
from etils import epath

from jaxlm.runs import orbax_noise
from jaxlm.runs.layout import BAD_CHECKPOINTS_DIR, absolute
from jaxlm.runs.meta import CheckpointMeta

_COMMIT_MARKER = "commit_success.txt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or used; the message says which and what to do."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """A restored checkpoint: its step, the arrays (opt_state None when not asked for or not saved), its meta."""

    step: int
    params: dict
    opt_state: object
    meta: CheckpointMeta


class Checkpointer:
    """Saves and restores a run's state under `directory`, keeping the newest `keep` (and every step
    divisible by `keep_every`); `read_only` opens someone else's checkpoints without touching them."""

    def __init__(
        self, directory: str, *, keep: int = 1, keep_every: int = 0, async_save: bool = False, read_only: bool = False
    ):
        orbax_noise.quiet()  # Orbax's own tracebacks of a failure; CheckpointError says it in one line
        # Orbax wants absolute paths; a relative --workdir is the common case on a laptop.
        self.directory = absolute(directory)
        self._last_save: int | None = None
        if read_only:
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, save_interval_steps=0, enable_async_checkpointing=False
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                keep_period=keep_every or None,
                enable_async_checkpointing=async_save,
                # A step's directory made in save() itself: a folder that cannot be written fails there, in
                # this thread, instead of leaving Orbax's background threads waiting for it forever.
                async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
            )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())

    def complete_steps(self) -> list[int]:
        """Steps whose checkpoint Orbax finished and marked committed, newest first."""
        return sorted(
            (
                step
                for step in self._manager.all_steps()
                if (epath.Path(self.directory) / str(step) / _COMMIT_MARKER).exists()
            ),
            reverse=True,
        )

    def save(self, step: int, params: dict, opt_state, meta: CheckpointMeta) -> None:
        """Starts writing step's checkpoint (opt_state None: params only); returns once the arrays are
        copied off the devices."""
        items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta.to_json())}
        if opt_state is not None:
            items["opt_state"] = ocp.args.StandardSave(opt_state)
        args = ocp.args.Composite(**items)
        if self._last_save is not None:
            self.wait()  # Orbax waits for the previous save anyway; this names it if that one failed
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
        return CheckpointError(
            f"saving the checkpoint of step {step} in {self.directory} failed "
            f"({type(error).__name__}: {error}); {older}. Check free disk space "
            "and write permission, then run the same command again."
        )

    def restore_newest(self, abstract_params, abstract_opt_state, *, report: Callable[[str], None]) -> Restored | None:
        """The newest checkpoint that restores, onto the shardings of the abstract trees; None if none.

        A step that Orbax left without a commit marker, or whose files fail to read, is reported
        and skipped. Raises CheckpointError when checkpoints exist but none restores.
        """
        skipped = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            if not (epath.Path(self.directory) / str(step) / _COMMIT_MARKER).exists():
                skipped.append(step)
                report(f"checkpoint {step} has no commit marker ({_COMMIT_MARKER}): an unfinished save; skipping it")
                continue
            try:
                restored = self.restore(step, abstract_params, abstract_opt_state)
            except Exception as error:  # truncated or unreadable files: fall back to an older step
                skipped.append(step)
                report(f"checkpoint {step} cannot be restored ({_cause(error)}); trying an older one")
                continue
            for bad in skipped:
                report(
                    f"checkpoint {bad} moved to {self._set_aside(bad)} (kept for inspection; the run "
                    "will write that step afresh)"
                )
            return restored
        if skipped:
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be restored (tried steps "
                f"{', '.join(map(str, skipped))}); move that directory away to start afresh"
            )
        return None

    def _set_aside(self, step: int) -> str:
        """Moves a bad step directory out of Orbax's sight, next to the checkpoints directory."""
        target = epath.Path(self.directory).parent / BAD_CHECKPOINTS_DIR / f"{step}-{now_iso()}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (epath.Path(self.directory) / str(step)).rename(target)
        self._manager.reload()
        return str(target)

    def has_optimizer_state(self, step: int) -> bool:
        """Whether step's checkpoint holds optimizer state (a params-only one, such as an import, does not)."""
        return (epath.Path(self.directory) / str(step) / "opt_state").exists()

    def restore(self, step: int, abstract_params, abstract_opt_state=None) -> Restored:
        """Step's checkpoint onto the abstract trees' shardings (opt_state skipped when None or not saved)."""
        items = {"params": ocp.args.StandardRestore(abstract_params), "meta": ocp.args.JsonRestore()}
        with_opt_state = abstract_opt_state is not None and self.has_optimizer_state(step)
        if with_opt_state:
            items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(
            step=step,
            params=restored.params,
            opt_state=restored["opt_state"] if with_opt_state else None,
            meta=CheckpointMeta.from_json(restored.meta, step),
        )

    def restore_average(self, step: int, abstract_params) -> dict | None:
        """The average of the parameters (train.ema_decay) that step's optimizer state holds, onto
        `abstract_params`' shardings, reading nothing else of the state; None when the run kept no average.

        The average is the optimizer state's field `ema` (jaxlm.train.ema.EmaState), a tree like the params.
        """
        if not self.has_optimizer_state(step):
            return None
        saved = self._manager.item_metadata(step).opt_state.tree
        path = _path_to_key(saved, "ema")
        if path is None:
            return None

        def skeleton(node, at: tuple):
            if at == path:
                return abstract_params
            if isinstance(node, dict):
                return {k: skeleton(v, (*at, k)) for k, v in node.items()}
            if isinstance(node, (list, tuple)):
                return [skeleton(v, (*at, i)) for i, v in enumerate(node)]
            return None if node is None else ocp.PLACEHOLDER  # not read

        item = skeleton(saved, ())
        restore_args = jax.tree.map(
            lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding) if isinstance(x, jax.ShapeDtypeStruct) else x, item
        )
        with ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(
                epath.Path(self.directory) / str(step) / "opt_state",
                args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args),
            )
        for key in path:
            restored = restored[key]
        return restored

    def meta(self, step: int) -> CheckpointMeta:
        """Step's metadata, read alone (no arrays)."""
        meta_only = ocp.args.Composite(meta=ocp.args.JsonRestore())
        return CheckpointMeta.from_json(self._manager.restore(step, args=meta_only).meta, step)

    def newest_meta(self) -> CheckpointMeta | None:
        """The metadata of the newest committed checkpoint, read alone; None if there is none or it does not
        read (restore_newest then reports it and falls back)."""
        steps = self.complete_steps()
        if not steps:
            return None
        try:
            return self.meta(steps[0])
        except Exception:  # Orbax raises many kinds; restore_newest names the cause
            return None

    def saved_params_shapes(self, step: int) -> dict:
        """The saved params as a tree of ShapeDtypeStructs (no sharding), read from the metadata."""
        tree = self._manager.item_metadata(step).params.tree
        return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)

    def close(self) -> None:
        self._manager.close()


def _path_to_key(tree, key: str) -> tuple | None:
    """The path (dict keys and list indices) of the first dict entry named `key` in a saved tree's metadata."""
    if isinstance(tree, dict):
        if key in tree:
            return (key,)
        children = tree.items()
    elif isinstance(tree, (list, tuple)):
        children = enumerate(tree)
    else:
        return None
    for name, child in children:
        found = _path_to_key(child, key)
        if found is not None:
            return (name, *found)
    return None


def _handlers() -> dict:
    return {
        "params": ocp.StandardCheckpointHandler(),
        "opt_state": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }


@contextlib.contextmanager
def reading_step(directory: str, step: int, steps: list[int], *, restore_from: bool = False) -> Iterator[None]:
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
            hint = (
                f"choose an older complete step ({', '.join(map(str, older))}; --step=N in python -m "
                "jaxlm.export and jaxlm.generate)"
            )
        raise CheckpointError(f"checkpoint {step} in {directory} cannot be read ({_cause(error)}); {hint}") from error


def _cause(error: Exception) -> str:
    """`Type: first line of the message`, short enough for a one-line report."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else 'no detail'}"


def now_iso() -> str:
    """The local time now, ISO 8601 with the timezone, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
