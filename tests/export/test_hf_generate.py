"""Greedy decoding of an exported model: jaxlm's KV-cache decoder and transformers' generate agree."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlm.data.tokenizer import EOS_ID, PAD_ID
from jaxlm.export.convert import to_hf
from jaxlm.generate import decode as generate
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = [[7, 12, 9], [5, 30, 41, 8, 17, 22, 6], [44]]


@pytest.mark.parametrize("family,num_kv_heads", [("gpt2", 4), ("llama", 2)])
def test_greedy_tokens_equal_transformers_generate_on_a_padded_batch(family, num_kv_heads, tmp_path):
    cfg = ModelConfig.for_family(
        family, vocab_size=50, width=32, num_layers=2, num_heads=4, num_kv_heads=num_kv_heads, mlp_dim=64, max_len=32
    )
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(5)))
    # Wider weights than init: peaked logits, so float noise between frameworks never flips an argmax.
    params = jax.tree.map(lambda x: np.asarray(x) * (6 if x.ndim >= 2 else 1), nnx.to_pure_dict(params))
    to_hf(cfg, params, str(tmp_path))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()

    width = max(map(len, PROMPTS))  # left padding, as for any batched causal generation
    ids = torch.tensor([[PAD_ID] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    theirs = [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in out[:, width:].tolist()]

    ours = generate.generate(graphdef, params, PROMPTS, max_new_tokens=12, max_len=cfg.max_len, eos_id=EOS_ID)
    assert ours == theirs
    assert len({tuple(row) for row in ours}) == len(PROMPTS) and max(map(len, ours)) > 3
