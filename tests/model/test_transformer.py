"""The whole model for each family: shapes, causality, packed segments, axis names, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

FAMILIES = ("gpt2", "llama", "bert")
V, L = 37, 12


def _model(family: str, **overrides) -> Transformer:
    sizes = dict(
        vocab_size=V,
        width=32,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2 if family == "llama" else 4,
        mlp_dim=48,
        max_len=L,
    )
    sizes.update(overrides)
    return Transformer(ModelConfig.for_family(family, **sizes), rngs=nnx.Rngs(0))


def _ids(batch=2, length=L, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(5, V, (batch, length)), jnp.int32)


def _positions(batch=2, length=L):
    return jnp.broadcast_to(jnp.arange(length), (batch, length))


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_shape_and_finite(family):
    logits = _model(family)(_ids(), _positions(), jnp.ones((2, L), jnp.int32))
    assert logits.shape == (2, L, V)
    assert bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_changing_a_future_token_never_changes_an_earlier_logit(family):
    model, ids = _model(family), _ids(batch=1)
    changed = ids.at[0, 7].set((ids[0, 7] + 1) % V)
    before = model(ids, _positions(1), jnp.ones((1, L), jnp.int32))
    after = model(changed, _positions(1), jnp.ones((1, L), jnp.int32))
    np.testing.assert_array_equal(before[0, :7], after[0, :7])
    assert not np.allclose(before[0, 7:], after[0, 7:])


def test_bidirectional_model_sees_the_future():
    model, ids = _model("bert"), _ids(batch=1)
    changed = ids.at[0, 7].set((ids[0, 7] + 1) % V)
    before = model(ids, _positions(1), jnp.ones((1, L), jnp.int32))
    after = model(changed, _positions(1), jnp.ones((1, L), jnp.int32))
    assert not np.allclose(before[0, :7], after[0, :7])


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_row_gives_each_document_its_own_logits(family):
    model = _model(family)
    doc_a, doc_b = _ids(1, 5, seed=1), _ids(1, 4, seed=2)
    pad = jnp.zeros((1, L - 9), jnp.int32)
    packed = jnp.concatenate([doc_a, doc_b, pad], axis=1)
    positions = jnp.concatenate([jnp.arange(5), jnp.arange(4), jnp.arange(L - 9)])[None]
    segments = jnp.array([[1] * 5 + [2] * 4 + [0] * (L - 9)])
    together = model(packed, positions, segments)
    alone_a = model(doc_a, _positions(1, 5), jnp.ones((1, 5), jnp.int32))
    alone_b = model(doc_b, _positions(1, 4), jnp.ones((1, 4), jnp.int32))
    np.testing.assert_allclose(together[0, :5], alone_a[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(together[0, 5:9], alone_b[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_parameter_has_one_logical_axis_name_per_dimension(family):
    state = nnx.state(_model(family), nnx.Param)
    variables = jax.tree.leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert variables
    for variable in variables:
        assert len(variable.axes) == variable[...].ndim, variable
    block_axes = jax.tree.leaves(state["blocks"], is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert all(v.axes[0] == "layers" and v[...].shape[0] == 3 for v in block_axes)


def test_family_architecture_shows_in_the_parameters():
    gpt2 = nnx.to_pure_dict(nnx.state(_model("gpt2")))
    llama = nnx.to_pure_dict(nnx.state(_model("llama")))
    bert = nnx.to_pure_dict(nnx.state(_model("bert")))
    assert "position_embed" in gpt2 and "lm_head" not in gpt2  # learned positions, tied head
    assert "position_embed" not in llama and "lm_head" in llama  # RoPE, untied head
    assert "gate" in llama["blocks"]["ffn"] and "bias" not in llama["blocks"]["ffn"]["up"]
    assert llama["blocks"]["attention"]["key"]["kernel"].shape == (3, 32, 2, 8)  # GQA: 2 kv heads
    assert {"type_embed", "embed_norm", "mlm_head"} <= set(bert) and "final_norm" not in bert


def test_gpt2_scales_residual_projection_init():
    params = nnx.to_pure_dict(nnx.state(_model("gpt2", width=64, mlp_dim=256, num_layers=8)))
    query_std = float(jnp.std(params["blocks"]["attention"]["query"]["kernel"]))
    out_std = float(jnp.std(params["blocks"]["attention"]["out"]["kernel"]))
    np.testing.assert_allclose(query_std, 0.02, rtol=0.1)
    np.testing.assert_allclose(out_std, 0.02 / np.sqrt(16), rtol=0.1)


def _loss_and_grads(model):
    """A loss over all logits and its gradients, on fixed inputs."""
    ids, positions, segments = _ids(), _positions(), jnp.ones((2, L), jnp.int32)
    graphdef, params = nnx.split(model)

    def loss(p):
        return jnp.mean(nnx.merge(graphdef, p)(ids, positions, segments) ** 2)

    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_changes_memory_not_numbers(remat):
    plain_loss, plain_grads = _loss_and_grads(_model("llama"))
    remat_loss, remat_grads = _loss_and_grads(_model("llama", remat=remat))
    np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), plain_grads, remat_grads)


def test_unrolled_layer_scan_gives_the_same_numbers():
    rolled_loss, rolled_grads = _loss_and_grads(_model("gpt2"))
    for unroll in (2, 3):
        loss, grads = _loss_and_grads(_model("gpt2", scan_unroll=unroll))
        np.testing.assert_allclose(loss, rolled_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), rolled_grads, grads)


def test_bfloat16_compute_keeps_float32_parameters_and_stays_close():
    ids, positions, segments = _ids(), _positions(), jnp.ones((2, L), jnp.int32)
    f32 = _model("llama")(ids, positions, segments)
    bf16_model = _model("llama", dtype="bfloat16")
    bf16 = bf16_model(ids, positions, segments)
    assert bf16.dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(bf16_model)))
    np.testing.assert_allclose(bf16.astype(jnp.float32), f32, atol=0.05)


def test_dropout_is_random_in_training_and_off_without_a_key():
    model = _model("gpt2", dropout=0.5)
    ids, positions, segments = _ids(), _positions(), jnp.ones((2, L), jnp.int32)
    eval_a, eval_b = model(ids, positions, segments), model(ids, positions, segments)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = model(ids, positions, segments, dropout_key=jax.random.key(0))
    train_b = model(ids, positions, segments, dropout_key=jax.random.key(1))
    assert not np.allclose(train_a, eval_a) and not np.allclose(train_a, train_b)
