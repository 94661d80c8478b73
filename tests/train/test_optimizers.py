"""The optimizers a run can name, its parameter average and float16 loss scaling: each against optax's own
transformation or a closed form, and every piece of their state split over the mesh like its parameter."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from optax.contrib import MuonDimensionNumbers

from jaxlm.config import base_config, model_config
from jaxlm.model.transformer import Transformer
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.ema import ema_params, parameter_ema
from jaxlm.train.loss_scale import LossScaleState, dynamic_loss_scale
from jaxlm.train.optimizer import learning_rate_schedule, make_optimizer, muon_dimensions, weight_decay_mask
from jaxlm.train.trainer import make_trainer

# A stacked block kernel, an embedding, a norm scale and a bias: what weight decay and Muon tell apart.
PARAMS = {
    "token_embed": {"embedding": jnp.linspace(-1.0, 1.0, 24).reshape(6, 4)},
    "blocks": {
        "ffn": {"up": {"kernel": jnp.linspace(-0.5, 0.7, 2 * 4 * 8).reshape(2, 4, 8)}},
        "ffn_norm": {"scale": jnp.ones((2, 4))},
        "attention": {"out": {"bias": jnp.full((2, 4), 0.3)}},
    },
}


def _train(**fields):
    train = base_config().train
    train.update({"steps": 100, "learning_rate": 1e-2, "warmup_steps": 10, "clip_norm": 0.0, **fields})
    return train


def _grads(seed: int):
    keys = jax.random.split(jax.random.key(seed), len(jax.tree.leaves(PARAMS)))
    leaves = [jax.random.normal(k, x.shape) for k, x in zip(keys, jax.tree.leaves(PARAMS))]
    return jax.tree.unflatten(jax.tree.structure(PARAMS), leaves)


def _run(optimizer, steps: int = 4):
    """The parameters after `steps` updates with fixed pseudo-random gradients."""
    params, state = PARAMS, optimizer.init(PARAMS)
    for step in range(steps):
        updates, state = optimizer.update(_grads(step), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _reference(name: str, train, params: dict = PARAMS) -> optax.GradientTransformation:
    """optax's own transformation for each optimizer, with the run's schedule and decay mask."""
    schedule, mask = learning_rate_schedule(train), weight_decay_mask(params, train.decay_embeddings)
    wd, b1, b2, eps = train.weight_decay, train.b1, train.b2, train.eps
    if name == "adamw":
        return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    if name == "lamb":
        return optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    if name == "adafactor":
        return optax.adafactor(
            schedule, multiply_by_parameter_scale=False, weight_decay_rate=wd, weight_decay_mask=mask
        )
    if name == "sgd":  # optax.sgd has no decay: decoupled decay by hand, p <- p - lr * (momentum + wd * p)
        return optax.chain(
            optax.trace(decay=b1), optax.add_decayed_weights(wd, mask), optax.scale_by_learning_rate(schedule)
        )
    raise ValueError(name)


def _split_layers(tree: dict) -> dict:
    """The blocks' stacked [layers, ...] leaves as one subtree per layer: what unstacked layers would be."""
    layers = jax.tree.leaves(tree["blocks"])[0].shape[0]
    split = {k: v for k, v in tree.items() if k != "blocks"}
    split.update({f"layer{i}": jax.tree.map(lambda x, i=i: x[i], tree["blocks"]) for i in range(layers)})
    return split


def _stack_layers(split: dict) -> dict:
    layers = sorted(k for k in split if k.startswith("layer"))
    tree = {k: v for k, v in split.items() if not k.startswith("layer")}
    tree["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[split[k] for k in layers])
    return tree


def _run_split(optimizer, steps: int = 4):
    """`_run` for an optimizer of per-layer leaves: the same gradients, split by layer."""
    params, state = _split_layers(PARAMS), optimizer.init(_split_layers(PARAMS))
    for step in range(steps):
        updates, state = optimizer.update(_split_layers(_grads(step)), state, params)
        params = optax.apply_updates(params, updates)
    return _stack_layers(params)


@pytest.mark.parametrize("name", ["adamw", "lamb", "adafactor", "sgd"])
def test_each_optimizer_makes_the_updates_of_optaxs_own_for_each_layer(name):
    # LAMB's trust ratio and Adafactor's update clipping are per matrix: for the stacked blocks, per layer, as
    # optax's own transformation gives when each layer is a leaf of its own.
    train = _train(optimizer=name, weight_decay=0.0 if name == "adafactor" else 0.1)
    ours, _ = make_optimizer(train, PARAMS)
    got, _ = _run(ours)
    want = _run_split(_reference(name, train, _split_layers(PARAMS)))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), got, want)
    assert not np.allclose(got["blocks"]["ffn"]["up"]["kernel"], PARAMS["blocks"]["ffn"]["up"]["kernel"])


def test_muon_orthogonalises_the_block_matrices_and_gives_the_rest_to_adamw():
    train = _train(optimizer="muon", weight_decay=0.0)
    ours, _ = make_optimizer(train, PARAMS)
    schedule = learning_rate_schedule(train)
    reference = optax.contrib.muon(
        schedule,
        beta=train.muon_momentum,
        eps=train.eps,
        adam_b1=train.b1,
        adam_b2=train.b2,
        muon_weight_dimension_numbers=muon_dimensions(PARAMS),
        consistent_rms=0.2,
    )
    got, _ = _run(ours)
    want, _ = _run(reference)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), got, want)
    # One step at the peak rate: each layer's [4, 8] update is (nearly) orthogonal, all singular values alike,
    # while the embedding goes AdamW's way: Adam's first step is a multiple of -sign(gradient).
    flat, _ = make_optimizer(_train(optimizer="muon", weight_decay=0.0, warmup_steps=0, decay="constant"), PARAMS)
    updates, _ = flat.update(_grads(0), flat.init(PARAMS), PARAMS)
    for layer, grad in zip(updates["blocks"]["ffn"]["up"]["kernel"], _grads(0)["blocks"]["ffn"]["up"]["kernel"]):
        singular = np.linalg.svd(np.asarray(layer), compute_uv=False)
        raw = np.linalg.svd(np.asarray(grad), compute_uv=False)
        # Five Newton-Schulz steps bring every singular value into about [0.7, 1.2] of one another.
        assert singular.max() / singular.min() < 1.8 < raw.max() / raw.min(), (singular, raw)
    embedding = np.asarray(updates["token_embed"]["embedding"])
    np.testing.assert_allclose(np.abs(embedding), np.abs(embedding).flat[0], rtol=1e-4)
    np.testing.assert_array_equal(np.sign(embedding), -np.sign(_grads(0)["token_embed"]["embedding"]))


def test_weight_decay_is_decoupled_and_reaches_the_same_leaves_with_every_optimizer():
    zero = optax.tree.zeros_like(PARAMS)
    kernel = PARAMS["blocks"]["ffn"]["up"]["kernel"]
    for name in ("adamw", "lamb", "adafactor", "muon", "sgd"):
        optimizer, _ = make_optimizer(_train(optimizer=name, weight_decay=0.5, warmup_steps=0), PARAMS)
        state = optimizer.init(PARAMS)
        updates, _ = optimizer.update(zero, state, PARAMS)
        decayed = np.asarray(updates["blocks"]["ffn"]["up"]["kernel"])
        if name == "lamb":  # the decay is part of the direction LAMB rescales by its trust ratio
            assert np.all(np.sign(decayed) == -np.sign(kernel)), name
        else:  # with a zero gradient, all that moves a matrix is -lr x weight_decay x param
            np.testing.assert_allclose(decayed, -1e-2 * 0.5 * kernel, rtol=1e-5, err_msg=name)
        for frozen in (
            updates["blocks"]["ffn_norm"]["scale"],
            updates["blocks"]["attention"]["out"]["bias"],
            updates["token_embed"]["embedding"],
        ):
            np.testing.assert_array_equal(frozen, 0.0, err_msg=name)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_muon_takes_every_block_matrix_as_its_layers_in_by_out_matrix(family):
    config = base_config()
    config.model.family = family
    cfg = model_config(config, 100)
    params = nnx.to_pure_dict(nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[1])
    dims = muon_dimensions(params)
    D, H, K, F = cfg.width, cfg.num_heads, cfg.head_dim, cfg.mlp_dim
    expected_in_out = {"query": (D, H * K), "key": (D, H * K), "value": (D, H * K), "out": (H * K, D)}
    expected_in_out.update({"up": (D, F), "gate": (D, F), "down": (F, D)})
    flat = {
        jax.tree_util.keystr(path): (x, d)
        for (path, x), d in zip(
            jax.tree_util.tree_leaves_with_path(params),
            jax.tree.leaves(dims, is_leaf=lambda d: d is None or isinstance(d, MuonDimensionNumbers)),
        )
    }
    seen = 0
    for path, (x, d) in flat.items():
        if path.startswith("['blocks']") and path.endswith("['kernel']"):
            name = path.split("'")[-4]
            sizes = [int(np.prod([x.shape[a] for a in axes])) for axes in (d.reduction_axis, d.output_axis)]
            assert tuple(sizes) == expected_in_out[name], path
            seen += 1
        else:  # embeddings, heads, norms, biases: AdamW's
            assert d is None, path
    assert seen == (7 if family == "llama" else 6)


def test_the_average_is_the_closed_form_after_n_steps():
    decay = 0.9
    optimizer, _ = make_optimizer(_train(ema_decay=decay), PARAMS)
    params, state = PARAMS, optimizer.init(PARAMS)
    history = [PARAMS]
    for step in range(5):
        updates, state = optimizer.update(_grads(step), state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    n = len(history) - 1
    closed = jax.tree.map(
        lambda *ps: decay**n * ps[0] + (1 - decay) * sum(decay ** (n - k) * ps[k] for k in range(1, n + 1)),
        *history,
    )
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), ema_params(state), closed)
    # The average never changes the updates: the parameters are AdamW's alone.
    plain, _ = make_optimizer(_train(), PARAMS)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), params, _run(plain, 5)[0])
    assert ema_params(plain.init(PARAMS)) is None
    assert parameter_ema(decay).init(PARAMS).ema["blocks"]["ffn"]["up"]["kernel"].dtype == jnp.float32


def test_loss_scale_backs_off_on_overflow_skips_the_update_and_grows_after_a_period():
    inner = optax.sgd(0.1, momentum=0.5)
    optimizer = dynamic_loss_scale(inner, initial_scale=8.0, period=2)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    finite, overflow = {"w": jnp.full(3, 0.5)}, {"w": jnp.array([0.5, jnp.inf, 0.5])}
    scales, updates_seen = [], []
    for grads in (finite, finite, overflow, finite, overflow, overflow, finite, finite):
        before = state
        updates, state = optimizer.update(grads, state, params)
        scales.append(float(state.scale))
        updates_seen.append(np.asarray(updates["w"]))
        if grads is overflow:  # skipped: no update, the inner momentum untouched
            np.testing.assert_array_equal(updates["w"], 0.0)
            jax.tree.map(np.testing.assert_array_equal, state.inner, before.inner)
    #           f    f (2 good: x2)  inf   f    inf   inf  f    f (2 good: x2)
    assert scales == [8.0, 16.0, 8.0, 8.0, 4.0, 2.0, 2.0, 4.0]
    assert int(state.overflows) == 3
    assert isinstance(state, LossScaleState)
    # The scale never falls below 1, however many overflows in a row.
    for _ in range(10):
        _, state = optimizer.update(overflow, state, params)
    assert float(state.scale) == 1.0


OPTIMIZER_SETUPS = {
    "adamw": {},
    "lamb": {"optimizer": "lamb"},
    "adafactor": {"optimizer": "adafactor"},
    "muon": {"optimizer": "muon"},
    "sgd": {"optimizer": "sgd"},
    "adamw+ema+fp16": {"ema_decay": 0.99},
}


@pytest.mark.parametrize("setup", list(OPTIMIZER_SETUPS))
def test_optimizer_state_is_split_like_its_parameters_on_8_devices_with_fsdp(setup):
    config = base_config()
    config.model.update(num_layers=2, width=128, num_heads=4, mlp_dim=256)
    config.data.batch_size = 8
    config.mesh.preset = "fsdp"
    config.train.update(OPTIMIZER_SETUPS[setup])
    if "fp16" in setup:
        config.model.dtype = "float16"
    trainer = make_trainer(config, model_config(config, 256), make_mesh(config.mesh))
    assert jax.device_count() == 8 and dict(trainer.mesh.shape)["fsdp"] == 8
    params = {
        jax.tree_util.keystr(p): (x, s) for (p, x), s in _with_paths(trainer.abstract_params, trainer.params_sharding)
    }
    split_like_a_param = 0
    for path, x, sharding in _paths_and_leaves(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state):
        owner = next((params[key] for key in params if path.endswith(key)), None)
        if owner is None or x.size <= 1:  # counters, scalars (the loss scale), placeholders
            assert sharding.is_fully_replicated, path
            continue
        param, param_sharding = owner
        if x.shape == param.shape:  # moments, the average: exactly as the parameter
            assert sharding.spec == param_sharding.spec, path
            split_like_a_param += 1
        else:  # Adafactor's row or column statistics: the parameter's split without the averaged axis
            assert x.ndim == param.ndim - 1, path
            kept = [a for a in param_sharding.spec if a is not None]
            assert all(a in kept for a in sharding.spec if a is not None), path
        if not param_sharding.is_fully_replicated and x.shape == param.shape:
            assert not sharding.is_fully_replicated, path
    assert split_like_a_param > 0
    # Nothing big is replicated: what one device holds of the state is about its share.
    per_device = sum(
        _shard_bytes(x, s)
        for _, x, s in _paths_and_leaves(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state)
    )
    total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(trainer.abstract_state.opt_state))
    assert per_device < total / 4, (per_device, total)


def _with_paths(tree, shardings):
    return zip(jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(shardings))


def _paths_and_leaves(tree, shardings):
    for (path, x), s in _with_paths(tree, shardings):
        yield "".join(f"['{k.key}']" for k in path if isinstance(k, jax.tree_util.DictKey)), x, s


def _shard_bytes(x, sharding) -> int:
    return int(np.prod(sharding.shard_shape(x.shape))) * x.dtype.itemsize
