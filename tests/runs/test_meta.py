"""The checkpoint metadata schema: what is written reads back, and what older checkpoints lack gets its default."""

import json

from jaxlm.runs.meta import CheckpointMeta


def test_the_wandb_run_id_round_trips_and_older_checkpoints_have_none():
    meta = CheckpointMeta(step=3, config_json='{"seed": 0}', saved_at="2026-01-01T00:00:00+00:00", wandb_run_id="x1")
    saved = json.loads(json.dumps(meta.to_json()))
    assert CheckpointMeta.from_json(saved, 3) == meta
    del saved["wandb_run_id"]  # as written before the field existed
    assert CheckpointMeta.from_json(saved, 3) == CheckpointMeta(
        step=3, config_json='{"seed": 0}', saved_at="2026-01-01T00:00:00+00:00"
    )
