"""The analytic FLOPs count: its matmul parameters are the model's real matmul weights."""

import jax
import pytest
from flax import nnx

from jaxlm.config import base_config
from jaxlm.flops import matmul_params, train_step_flops
from jaxlm.model import Transformer, model_config_from


def _kernels_and_output_embedding(model_cfg) -> int:
    """Sizes of every Dense kernel of the built model, plus the token embedding where it is the output."""
    params = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0)))))
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = jax.tree_util.keystr(path)
        if name.endswith("['kernel']") or (model_cfg.tied_embeddings and name == "['token_embed']['embedding']"):
            total += leaf.size
    return total


@pytest.mark.parametrize("family,kv_heads", [("gpt2", -1), ("llama", 2), ("bert", -1)])
def test_matmul_params_are_the_models_matmul_weights(family, kv_heads):
    config = base_config()
    config.model.family, config.model.num_kv_heads = family, kv_heads
    model_cfg = model_config_from(config, 1000)
    assert matmul_params(model_cfg) == _kernels_and_output_embedding(model_cfg)


def test_step_flops_follow_the_formula():
    config = base_config()
    config.model.update(family="gpt2", num_layers=12, width=768, num_heads=12)
    model_cfg = model_config_from(config, 50304)
    flops = train_step_flops(model_cfg, batch_size=8, seq_len=1024)
    tokens = 8 * 1024
    assert flops.matmul == 6 * (12 * 12 * 768**2 + 768 * 50304) * tokens
    assert flops.attention == 12 * 12 * 768 * 1024 * tokens
    assert flops.total == flops.matmul + flops.attention
    one_block = train_step_flops(model_cfg, batch_size=8, seq_len=1024, num_layers=1)
    assert one_block.attention == flops.attention / 12
