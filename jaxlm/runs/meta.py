"""What a checkpoint records beside its arrays: one schema, written and read as JSON.

Every checkpoint (a training step, a params-only import of a Hugging Face model) carries a
CheckpointMeta: the step and its counters, the run's config, the data iterator's state, the tokenizer
file itself (so a checkpoint directory alone is enough to export or continue), and where the weights
came from. Checkpoints written before this schema (no "version") read back with the same fields.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

from jaxlm.data.tokenizer import Tokenizer

SCHEMA_VERSION = 2


@dataclasses.dataclass(frozen=True)
class TokenizerRecord:
    """A tokenizer file as a checkpoint keeps it: its name, sha256 and bytes."""

    file: str  # "tokenizer.model" (sentencepiece) or "tokenizer.json" (char)
    sha256: str
    content: bytes

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> TokenizerRecord:
        content = tokenizer.serialized()
        return cls(tokenizer.FILENAME, hashlib.sha256(content).hexdigest(), content)

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "content_b64": base64.b64encode(self.content).decode()}

    @classmethod
    def from_json(cls, saved: dict) -> TokenizerRecord:
        return cls(saved["file"], saved["sha256"], base64.b64decode(saved["content_b64"]))


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint holds besides its parameter (and optimizer state) arrays."""

    step: int  # optimizer steps taken when it was saved
    config_json: str  # the run config, as config.json holds it
    saved_at: str  # ISO 8601 with the timezone
    params_only: bool = False  # no optimizer state saved (an import): a run restoring it starts a fresh one
    train_seconds: float = 0.0  # wall time spent training up to `step`, over every resumed run
    skipped_steps: int = 0  # non-finite steps skipped (train.skip_nonfinite)
    data_state: dict | None = None  # the data iterator's state (TrainBatches.state)
    tokenizer: TokenizerRecord | None = None
    mesh: dict | None = None  # the mesh axis sizes it was saved from
    imported_from: str | None = None  # the Hugging Face folder of an import
    wandb_run_id: str | None = None  # the Weights & Biases run it logged to: a resumed run continues it

    def to_json(self) -> dict:
        saved = dataclasses.asdict(self)
        saved["tokenizer"] = self.tokenizer.to_json() if self.tokenizer else None
        saved["config"] = saved.pop("config_json")
        return {"version": SCHEMA_VERSION, **saved}

    @classmethod
    def from_json(cls, saved: dict, step: int) -> CheckpointMeta:
        """The metadata of the checkpoint of `step` (older layouts kept the counters under "state")."""
        counters = saved.get("state", {})
        tokenizer = saved.get("tokenizer")
        return cls(
            step=int(saved.get("step", counters.get("step", step))),
            config_json=saved["config"],
            saved_at=saved.get("saved_at", ""),
            params_only=bool(saved.get("params_only", False)),
            train_seconds=float(saved.get("train_seconds", 0.0)),
            skipped_steps=int(saved.get("skipped_steps", counters.get("skipped_steps", 0))),
            data_state=saved.get("data_state"),
            tokenizer=TokenizerRecord.from_json(tokenizer) if tokenizer else None,
            mesh=saved.get("mesh"),
            imported_from=saved.get("imported_from"),
            wandb_run_id=saved.get("wandb_run_id"),
        )

    def config_dict(self) -> dict:
        """The run config as a plain dict."""
        return json.loads(self.config_json)
