"""Fill-mask against the model's own forward pass, and the lines the CLI and the training demo print."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.generate.fill_mask import demo_lines, encode_masked, fill_lines, fill_mask
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

TOKENIZER = CharTokenizer.train(["The quick brown fox jumps over the lazy dog."])


def _bert(vocab_size: int = TOKENIZER.vocab_size):
    cfg = ModelConfig.for_family(
        "bert", vocab_size=vocab_size, width=32, num_layers=2, num_heads=4, num_kv_heads=4, mlp_dim=64, max_len=64
    )
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(3)))
    return graphdef, jax.tree.map(lambda x: x * 8 if x.ndim >= 2 else x, nnx.to_pure_dict(params))


def test_fill_mask_returns_sorted_top_k_probabilities_of_the_model():
    graphdef, params = _bert(23)
    ids = [2, 7, 4, 9, 3]
    top = fill_mask(graphdef, params, ids, top_k=3)
    logits = nnx.merge(graphdef, params)(jnp.array([ids]), jnp.arange(5)[None], jnp.ones((1, 5), int))
    probs = np.array(jax.nn.softmax(logits[0, 2]))
    assert [t for t, _ in top[2]] == list(np.argsort(-probs)[:3])
    np.testing.assert_allclose([p for _, p in top[2]], np.sort(probs)[::-1][:3], rtol=1e-5)


def test_both_mask_spellings_are_the_mask_id():
    ids = encode_masked(TOKENIZER, "The <mask>ox and the [MASK]og", max_len=64)
    assert ids[0] == TOKENIZER.bos_id and ids[-1] == TOKENIZER.eos_id
    assert ids.count(TOKENIZER.mask_id) == 2
    assert ids == encode_masked(TOKENIZER, "The [MASK]ox and the <mask>og", max_len=64)


def test_fill_lines_name_each_mask_with_the_models_top_k():
    graphdef, params = _bert()
    ids = encode_masked(TOKENIZER, "The <mask>uick", max_len=64)
    [line] = fill_lines(graphdef, params, TOKENIZER, ids, top_k=5)
    position = ids.index(TOKENIZER.mask_id)
    top = fill_mask(graphdef, params, ids, top_k=5)[position]
    assert line == f"  <mask> at {position}: " + ", ".join(f"{TOKENIZER.decode([t])!r} {p:.3f}" for t, p in top)


def test_the_training_demo_masks_every_seventh_piece_and_says_what_was_there():
    graphdef, params = _bert()
    lines = demo_lines(graphdef, params, TOKENIZER, "The quick brown fox", max_len=64)
    assert lines[0] == "input:  <mask> h e   q u i <mask> k   b r o w <mask>   f o x"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  <mask> at 1 (was 'T')",
        "  <mask> at 8 (was 'c')",
        "  <mask> at 15 (was 'n')",
    ]
