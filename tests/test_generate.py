"""Sampling and fill-mask against a step-by-step full forward pass."""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlm import generate
from jaxlm.model import ModelConfig, Transformer

EOS = 3


def _model(family):
    cfg = ModelConfig.for_family(family, vocab_size=23, width=32, num_layers=2, num_heads=4,
                                 num_kv_heads=4, mlp_dim=64, max_len=16)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(3)))
    return graphdef, nnx.to_pure_dict(params)


def _greedy_reference(graphdef, params, ids, steps):
    model, ids = nnx.merge(graphdef, params), list(ids)
    for _ in range(steps):
        x = jnp.array([ids])
        logits = model(x, jnp.arange(len(ids))[None], jnp.ones_like(x))
        ids.append(int(jnp.argmax(logits[0, -1])))
    return ids


def test_greedy_sample_equals_argmax_of_a_full_forward_each_step():
    graphdef, params = _model("gpt2")
    prompt = [5, 9, 7]
    got = generate.sample(graphdef, params, prompt, num_tokens=6, max_len=16, temperature=0.0,
                          seed=0, eos_id=-1)
    assert got == _greedy_reference(graphdef, params, prompt, 6)[3:]


def test_empty_prompt_starts_after_an_eos():
    graphdef, params = _model("gpt2")
    for seed in range(3):
        kwargs = dict(num_tokens=8, max_len=16, temperature=1.5, seed=seed, eos_id=EOS)
        assert (generate.sample(graphdef, params, [], **kwargs)
                == generate.sample(graphdef, params, [EOS], **kwargs))
    expected = _greedy_reference(graphdef, params, [EOS], 4)[1:]
    expected = expected[:expected.index(EOS)] if EOS in expected else expected
    assert generate.sample(graphdef, params, [], num_tokens=4, max_len=16, temperature=0.0, seed=0,
                           eos_id=EOS) == expected


def test_sampling_stops_at_the_window_and_depends_on_the_seed():
    graphdef, params = _model("gpt2")
    long = generate.sample(graphdef, params, [5] * 10, num_tokens=50, max_len=16, temperature=1.0,
                           seed=0, eos_id=-1)
    assert len(long) == 6  # 16 slots, 10 taken by the prompt
    runs = {tuple(generate.sample(graphdef, params, [5], num_tokens=10, max_len=16, temperature=2.0,
                                  seed=s, eos_id=-1)) for s in range(4)}
    assert len(runs) > 1


def test_fill_mask_returns_sorted_top_k_probabilities_of_the_model():
    graphdef, params = _model("bert")
    ids = [2, 7, 4, 9, 3]
    top = generate.fill_mask(graphdef, params, ids, top_k=3)
    logits = nnx.merge(graphdef, params)(jnp.array([ids]), jnp.arange(5)[None], jnp.ones((1, 5), int))
    probs = np.array(jnp.exp(logits[0, 2] - jnp.max(logits[0, 2])))
    probs /= probs.sum()
    assert [t for t, _ in top[2]] == list(np.argsort(-probs)[:3])
    np.testing.assert_allclose([p for _, p in top[2]], np.sort(probs)[::-1][:3], rtol=1e-5)
