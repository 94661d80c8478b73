"""KV-cache decoding and sampling filters against full forward passes of the model; fused-kernel runs decode too."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.generate import decode as generate
from jaxlm.generate.fill_mask import fill_mask
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer, unstack_layers

EOS_ID = 3
V = 23
MAX_LEN = 16


def _model(family, num_kv_heads=4, seed=3):
    cfg = ModelConfig.for_family(
        family,
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=num_kv_heads,
        mlp_dim=64,
        max_len=MAX_LEN,
    )
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)))
    # Larger weights than init gives peaked logits, so argmax is never a near-tie.
    params = jax.tree.map(lambda x: x * 8 if x.ndim >= 2 else x, nnx.to_pure_dict(params))
    return graphdef, params


@functools.partial(jax.jit, static_argnums=0)
def _window_logits(graphdef, params, window_1xL):
    model = nnx.merge(graphdef, params)
    return model(window_1xL, jnp.arange(window_1xL.shape[1])[None], jnp.ones_like(window_1xL))[0]


def _logits(graphdef, params, ids):
    """Logits [len(ids), V] of one causal full forward pass (in a fixed window: one compilation)."""
    return _window_logits(graphdef, params, jnp.array([list(ids) + [0] * (MAX_LEN - len(ids))]))[: len(ids)]


def _greedy_reference(graphdef, params, ids, steps):
    ids = list(ids)
    for _ in range(steps):
        ids.append(int(jnp.argmax(_logits(graphdef, params, ids)[-1])))
    return ids


@pytest.mark.parametrize("layers_apart", [False, True], ids=["scanned", "layers_apart"])
@pytest.mark.parametrize("family,num_kv_heads", [("gpt2", 4), ("llama", 2)])
def test_cached_decoding_gives_the_logits_of_a_full_forward_pass(family, num_kv_heads, layers_apart):
    graphdef, params = _model(family, num_kv_heads)
    # Apart, the blocks run on their own layer's parameters; the stack is emptied to show it goes unused.
    layers = unstack_layers(params["blocks"]) if layers_apart else None
    stack = jax.tree.map(lambda leaf: leaf[:0], params["blocks"]) if layers_apart else params["blocks"]
    decode = jax.jit(lambda *args: nnx.merge(graphdef, {**params, "blocks": stack}).decode(*args, layers=layers))
    ids = [7, 5, 9, 11, 6, 8, 12]
    full = _logits(graphdef, params, ids)
    # Two rows: the prompt left-padded by 2 (pads are segment 0), and the prompt itself.
    prompt = jnp.array([[0, 0, *ids[:4]], [*ids[:4], 0, 0]])[:, :6]
    segments = jnp.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    positions = jnp.array([[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 0, 0]])
    cache = nnx.merge(graphdef, params).init_cache(2, 9, per_layer=layers_apart)
    logits, cache = decode(prompt, positions, segments, cache, jnp.int32(0))
    np.testing.assert_allclose(logits[0, 2:], full[:4], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[1, :4], full[:4], atol=1e-5, rtol=1e-5)
    # Row 0 continues in slots 6.. (after its 6-slot prompt); check each step against the full pass.
    for k, token in enumerate(ids[4:]):
        step_ids = jnp.array([[token], [token]])
        step_positions = jnp.array([[4 + k], [4 + k]])
        logits, cache = decode(step_ids, step_positions, jnp.array([[1], [0]]), cache, jnp.int32(6 + k))
        np.testing.assert_allclose(logits[0, 0], full[4 + k], atol=1e-5, rtol=1e-5)


def test_greedy_sample_equals_argmax_of_a_full_forward_each_step():
    graphdef, params = _model("gpt2")
    prompt = [5, 9, 7]
    got = generate.sample(graphdef, params, prompt, num_tokens=6, max_len=16, temperature=0.0, seed=0, eos_id=-1)
    assert got == _greedy_reference(graphdef, params, prompt, 6)[3:]


def test_a_batch_of_prompts_of_different_lengths_decodes_each_as_alone():
    graphdef, params = _model("llama", num_kv_heads=2)
    prompts = [[5], [9, 7, 6, 8, 10, 12, 14], [11, 13, 6]]
    got = generate.generate(graphdef, params, prompts, max_new_tokens=7, max_len=16)
    for prompt, new in zip(prompts, got):
        assert new == _greedy_reference(graphdef, params, prompt, 7)[len(prompt) :]


def test_each_row_stops_at_eos_or_at_the_window_end():
    graphdef, params = _model("gpt2")
    prompts = [[5, 9], [6] * 12]
    free = generate.generate(graphdef, params, prompts, max_new_tokens=8, max_len=16)
    assert len(free[0]) == 8 and len(free[1]) == 4  # the second row reaches slot 16
    eos = free[0][3]  # make the 4th token of the first row the end of sequence
    stopped = generate.generate(graphdef, params, prompts, max_new_tokens=8, max_len=16, eos_id=eos)
    assert stopped[0] == free[0][: free[0].index(eos)]
    expected_second = free[1][: free[1].index(eos)] if eos in free[1] else free[1]
    assert stopped[1] == expected_second


def test_empty_prompt_starts_after_an_eos():
    graphdef, params = _model("gpt2")
    for seed in range(3):
        kwargs = dict(num_tokens=8, max_len=16, temperature=1.5, seed=seed, eos_id=EOS_ID)
        assert generate.sample(graphdef, params, [], **kwargs) == generate.sample(graphdef, params, [EOS_ID], **kwargs)
    expected = _greedy_reference(graphdef, params, [EOS_ID], 4)[1:]
    expected = expected[: expected.index(EOS_ID)] if EOS_ID in expected else expected
    assert (
        generate.sample(graphdef, params, [], num_tokens=4, max_len=16, temperature=0.0, seed=0, eos_id=EOS_ID)
        == expected
    )


def test_sampling_stops_at_the_window_and_depends_on_the_seed():
    graphdef, params = _model("gpt2")
    long = generate.sample(graphdef, params, [5] * 10, num_tokens=50, max_len=16, temperature=1.0, seed=0, eos_id=-1)
    assert len(long) == 6  # 16 slots, 10 taken by the prompt
    runs = {
        tuple(generate.sample(graphdef, params, [5], num_tokens=10, max_len=16, temperature=2.0, seed=s, eos_id=-1))
        for s in range(4)
    }
    assert len(runs) > 1


def test_top_k_and_top_p_draw_only_from_their_sets():
    graphdef, params = _model("gpt2", seed=4)
    prompt = [5, 9]
    greedy = generate.generate(graphdef, params, [prompt], max_new_tokens=6, max_len=16)[0]
    # A set of one token is greedy decoding, whatever the temperature.
    assert (
        generate.generate(graphdef, params, [prompt], max_new_tokens=6, max_len=16, temperature=5.0, top_k=1, seed=1)[0]
        == greedy
    )
    assert (
        generate.generate(
            graphdef, params, [prompt], max_new_tokens=6, max_len=16, temperature=5.0, top_p=1e-6, seed=1
        )[0]
        == greedy
    )
    # Hot sampling from the top 3 / the 0.5 nucleus: each token is in that set of the full pass.
    prompts = [prompt] * 16
    for filters in (dict(top_k=3), dict(top_p=0.5)):
        rows = generate.generate(
            graphdef, params, prompts, max_new_tokens=4, max_len=16, temperature=3.0, seed=7, **filters
        )
        assert len({tuple(r) for r in rows}) > 1
        for row in rows:
            for i, token in enumerate(row):
                logits = np.asarray(_logits(graphdef, params, prompt + row[:i])[-1]) / 3.0
                order = np.argsort(-logits)
                if "top_k" in filters:
                    allowed = order[:3]
                else:
                    probs = np.exp(logits[order] - logits.max())
                    probs /= probs.sum()
                    allowed = order[: int(np.searchsorted(np.cumsum(probs), 0.5)) + 1]
                assert token in allowed


@pytest.mark.parametrize("attention", ["splash", "cudnn"])
def test_a_run_trained_with_a_fused_kernel_samples_and_fills_masks_anywhere(attention):
    """Short prompts on the CPU: inference uses "xla" attention over the very same parameters."""
    bert_graphdef, bert_params = _model("bert")
    trained_cfg = dataclasses.replace(nnx.merge(bert_graphdef, bert_params).cfg, attention=attention)
    ids = [2, 7, 4, 9, 3]
    assert fill_mask(generate.inference_graphdef(trained_cfg), bert_params, ids, top_k=3) == fill_mask(
        bert_graphdef, bert_params, ids, top_k=3
    )
    graphdef, params = _model("llama")
    trained_cfg = dataclasses.replace(nnx.merge(graphdef, params).cfg, attention=attention)
    kwargs = dict(max_new_tokens=4, max_len=MAX_LEN, eos_id=EOS_ID)
    assert generate.generate(generate.inference_graphdef(trained_cfg), params, [[5, 6]], **kwargs) == generate.generate(
        graphdef, params, [[5, 6]], **kwargs
    )
