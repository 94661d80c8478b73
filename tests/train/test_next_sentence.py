"""BERT's next-sentence prediction in the step, the sharded step and a whole run (data.next_sentence)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlm.config import base_config, model_config
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.loop import run
from jaxlm.train.trainer import make_trainer

V, B, L = 64, 8, 16


def _config(preset="dp", **train_fields):
    config = base_config()
    config.model.update(family="bert", num_layers=2, width=32, num_heads=4, mlp_dim=64)
    config.data.update(seq_len=L, batch_size=B, next_sentence=True)
    config.train.update(warmup_steps=1, learning_rate=1e-3, **train_fields)
    config.mesh.preset = preset
    return config


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, L + 1, B)
    real = np.arange(L) < lengths[:, None]
    split = rng.integers(2, lengths - 2)
    tokens = np.where(real, rng.integers(5, V, (B, L)), 0).astype(np.int32)
    return {
        "inputs": tokens,
        "targets": tokens,
        "weights": (real & (rng.random((B, L)) < 0.3)).astype(np.float32),
        "positions": np.where(real, np.arange(L), 0).astype(np.int32),
        "segment_ids": real.astype(np.int32),
        "token_types": (real & (np.arange(L) >= split[:, None])).astype(np.int32),
        "next_sentence": rng.integers(0, 2, B).astype(np.int32),
    }


def _trainer(config, devices):
    return make_trainer(config, model_config(config, V), make_mesh(config.mesh, devices))


def test_the_loss_is_masked_lm_plus_next_sentence_and_both_heads_learn():
    config = _config()
    trainer = _trainer(config, jax.devices()[:1])
    state = trainer.init_state(config.seed)
    params = jax.device_get(state.params)
    batch = _batch()
    model = nnx.merge(trainer.graphdef, params)
    logits_BxLxV, pair_logits_Bx2 = model.with_next_sentence(
        batch["inputs"], batch["positions"], batch["segment_ids"], batch["token_types"]
    )
    assert pair_logits_Bx2.shape == (B, 2)
    token_loss = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, batch["targets"])
    mlm = float((token_loss * batch["weights"]).sum() / batch["weights"].sum())
    nsp = float(optax.softmax_cross_entropy_with_integer_labels(pair_logits_Bx2, batch["next_sentence"]).mean())

    new_state, metrics = trainer.train_step(state, batch)
    new_state, _ = trainer.train_step(new_state, batch)  # the warmup's first learning rate is 0
    np.testing.assert_allclose(float(metrics["loss"]), mlm, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["next_sentence_loss"]), nsp, rtol=1e-5)
    # The gradient of the sum reached the pooler and classifier (only next-sentence loss feeds them).
    moved = jax.device_get(new_state.params)["next_sentence_head"]
    for name in ("pooler", "classifier"):
        assert not np.allclose(moved[name]["kernel"], params["next_sentence_head"][name]["kernel"])


def test_token_types_reach_the_model():
    config = _config()
    trainer = _trainer(config, jax.devices()[:1])
    model = nnx.merge(trainer.graphdef, jax.device_get(trainer.init_state(0).params))
    batch = _batch()
    args = batch["inputs"], batch["positions"], batch["segment_ids"]
    _, with_types = model.with_next_sentence(*args, batch["token_types"])
    _, without = model.with_next_sentence(*args, jnp.zeros_like(batch["token_types"]))
    assert not np.allclose(with_types, without)


def test_filler_rows_carry_no_next_sentence_weight():
    config = _config()
    trainer = _trainer(config, jax.devices()[:1])
    params = trainer.init_state(0).params
    batch = _batch()
    padded = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in batch.items()}
    whole = trainer.eval_step(params, batch)
    config.data.batch_size = 2 * B
    with_filler = _trainer(config, jax.devices()[:1]).eval_step(params, padded)
    for key in ("next_sentence_loss_sum", "next_sentence_correct_sum", "next_sentence_weight_sum", "loss_sum"):
        np.testing.assert_allclose(float(with_filler[key]), float(whole[key]), rtol=1e-5, err_msg=key)
    assert float(whole["next_sentence_weight_sum"]) == B


def test_gradient_accumulation_equals_one_big_batch():
    one = _trainer(_config(), jax.devices()[:1])
    two = _trainer(_config(grad_accum_steps=2), jax.devices()[:1])
    state_one, metrics_one = one.train_step(one.init_state(0), _batch())
    state_two, metrics_two = two.train_step(two.init_state(0), _batch())
    for key in ("loss", "next_sentence_loss", "next_sentence_accuracy", "grad_norm"):
        np.testing.assert_allclose(float(metrics_two[key]), float(metrics_one[key]), rtol=1e-5, err_msg=key)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jax.device_get(state_two.params),
        jax.device_get(state_one.params),
    )


@pytest.mark.parametrize("preset", ["fsdp", pytest.param("fsdp_tp", marks=pytest.mark.slow)])
def test_sharded_steps_equal_one_device(preset):
    def losses(config, devices):
        trainer = _trainer(config, devices)
        state, out = trainer.init_state(0), []
        for seed in range(3):
            batch = {k: jax.device_put(v, trainer.batch_shardings[k]) for k, v in _batch(seed).items()}
            state, metrics = trainer.train_step(state, batch)
            out.append((float(metrics["loss"]), float(metrics["next_sentence_loss"])))
        return out

    np.testing.assert_allclose(losses(_config(preset), jax.devices()), losses(_config(), jax.devices()[:1]), rtol=1e-5)


def _topic_corpus(path, documents=24):
    """Documents in one of four disjoint six-letter alphabets, in turn. A NotNext B from another alphabet
    gives itself away by its letters; validation holds the last two or three documents, all in different
    alphabets, so there every NotNext B does."""
    rng = np.random.default_rng(0)
    letters = "abcdefghijklmnopqrstuvwx"
    with open(path, "w") as f:
        for d in range(documents):
            alphabet = list(letters[6 * (d % 4) : 6 * (d % 4) + 6])
            words = ["".join(rng.choice(alphabet, rng.integers(2, 6))) for _ in range(300)]
            f.write(" ".join(words) + "\n")


@pytest.mark.slow
def test_a_run_learns_next_sentence_prediction(tmp_path):
    corpus = tmp_path / "topics.txt"
    _topic_corpus(corpus)
    config = base_config()
    config.model.update(family="bert", num_layers=2, width=64, num_heads=4)
    config.data.update(
        source="text",
        path=str(corpus),
        document="line",
        seq_len=48,
        batch_size=16,
        next_sentence=True,
        val_fraction=0.1,
    )
    config.data.tokenizer.kind = "char"
    config.train.update(steps=300, warmup_steps=10, learning_rate=3e-3)
    config.eval.update(every=300, max_batches=4)
    config.checkpoint.every = 0
    config.sample.num_tokens = 4
    result = run(config, str(tmp_path / "run"))
    assert np.isfinite(result.final_loss)
    with open(os.path.join(tmp_path, "run", "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    evals = [r for r in records if "val_next_sentence_accuracy" in r]
    steps = [r for r in records if "next_sentence_loss" in r]
    assert evals and steps
    # Chance is 0.5 (64 rows: one standard deviation is 0.06); the runs seen reach 0.97.
    assert evals[-1]["val_next_sentence_accuracy"] > 0.75, evals[-1]


def test_resuming_with_another_model_is_refused_by_name():
    # The loop checks the newest checkpoint's config before Orbax meets trees that differ.
    from jaxlm.runs.checkpoint import CheckpointError
    from jaxlm.runs.meta import CheckpointMeta
    from jaxlm.train.resume import check_same_model

    def meta(saved: dict) -> CheckpointMeta:
        return CheckpointMeta(step=60, config_json=json.dumps(saved), saved_at="")

    saved = json.loads(_config().to_json_best_effort())
    config = _config()
    check_same_model(meta(saved), config)
    config.data.next_sentence = False
    with pytest.raises(
        CheckpointError,
        match=r"step 60 was trained with data.next_sentence=True, but this run "
        r"asks for False, a model with other parameters",
    ):
        check_same_model(meta(saved), config)
    # A checkpoint older than a field counts as its default.
    del saved["model"]["biases"], saved["data"]["next_sentence"]
    older = base_config()
    older.model.update(family="bert", num_layers=2, width=32, num_heads=4, mlp_dim=64)
    older.data.update(seq_len=L, batch_size=B)
    check_same_model(meta(saved), older)
    older.model.biases = "none"
    with pytest.raises(CheckpointError, match="model.biases='family'"):
        check_same_model(meta(saved), older)
