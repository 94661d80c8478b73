"""Weights & Biases, when `log.wandb_project` names a project: the run's scalars and its config.

Optional: `wandb` comes with the `wandb` extra and is imported only when a project is set. MetricWriter
feeds a WandbRun the same scalars, names and steps it gives TensorBoard, on process 0 only. The W&B run's id
goes into every checkpoint (CheckpointMeta.wandb_run_id), so that a resumed run continues the same W&B run.
W&B writes its files under <workdir>/wandb/, never to the current directory; with WANDB_MODE=offline it
writes only there, and `wandb sync` uploads them later.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import ml_collections

from jaxlm.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class WandbSettings:
    """The W&B run a training run logs to."""

    project: str
    entity: str  # "" = the user's default entity
    name: str  # "" = the workdir's folder name
    resume_id: str | None  # the run of the checkpoint being resumed; None = a new run

    @classmethod
    def of(cls, log: ml_collections.ConfigDict, resume_id: str | None) -> WandbSettings | None:
        """The settings of the config's log section; None when W&B is off."""
        if not log.wandb_project:
            return None
        return cls(log.wandb_project, log.wandb_entity, log.wandb_name, resume_id)


def require_wandb(log: ml_collections.ConfigDict) -> None:
    """Raises ConfigError when a W&B project is set but wandb is not installed, before anything is built."""
    if log.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            f"config.log.wandb_project={log.wandb_project!r}: logging to Weights & Biases needs the Python package "
            "'wandb', which jaxlm's optional [wandb] extra installs: pip install -e \".[wandb]\" (from the checkout)"
        )


class WandbRun:
    """A started W&B run: scalars by name at their step, the config, finished by `close`."""

    def __init__(self, settings: WandbSettings, workdir: str, config_json: str):
        import wandb  # only here: the extra is optional, and importing it costs a second

        try:
            self._run = wandb.init(
                project=settings.project,
                entity=settings.entity or None,
                name=settings.name or os.path.basename(os.path.abspath(workdir)),
                id=settings.resume_id,
                resume="allow" if settings.resume_id else None,  # "allow": also a run never synced (offline)
                dir=workdir,
                config=json.loads(config_json),
            )
        except wandb.errors.Error as error:  # no API key, no such entity, no network
            raise ConfigError(
                f"config.log.wandb_project={settings.project!r}: W&B could not start its run ({error}); run "
                "`wandb login`, or set WANDB_MODE=offline to keep W&B's files in the workdir"
            ) from error
        self.id: str = self._run.id
        # A resumed W&B run already holds the steps its earlier part logged after the checkpoint; W&B refuses
        # a step below its newest (with a warning each time), and an exact resume logs the same numbers.
        self._first_step = self._run.starting_step

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Adds the scalars to the run's history at `step` (a step logged twice merges)."""
        if step >= self._first_step:
            self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()
