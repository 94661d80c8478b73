"""The analytic FLOPs count: its matmul parameters are the model's real matmul weights."""

import jax
import pytest
from flax import nnx

from jaxlm.config import base_config, model_config
from jaxlm.model.flops import matmul_params, train_step_flops
from jaxlm.model.transformer import Transformer


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
    model_cfg = model_config(config, 1000)
    assert matmul_params(model_cfg) == _kernels_and_output_embedding(model_cfg)


def test_step_flops_follow_the_formula():
    config = base_config()
    config.model.update(family="gpt2", num_layers=12, width=768, num_heads=12)
    model_cfg = model_config(config, 50304)
    flops = train_step_flops(model_cfg, batch_size=8, seq_len=1024)
    tokens = 8 * 1024
    assert flops.matmul == 6 * (12 * 12 * 768**2 + 768 * 50304) * tokens
    assert flops.attention == 12 * 12 * 768 * 1024 * tokens
    assert flops.total == flops.matmul + flops.attention
    one_block = train_step_flops(model_cfg, batch_size=8, seq_len=1024, num_layers=1)
    assert one_block.attention == flops.attention / 12


def _params(family: str):
    config = base_config()
    config.model.family, config.model.num_layers, config.model.width, config.model.num_heads = family, 2, 64, 4
    config.data.seq_len = 32
    model_cfg = model_config(config, 100)
    return model_cfg, nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0)))))


def _kernels(tree) -> int:
    return sum(
        leaf.size
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        if jax.tree_util.keystr(path).endswith("['kernel']")
    )


def test_untied_llama_counts_its_head_but_not_its_input_lookup():
    model_cfg, params = _params("llama")
    matmuls = _kernels(params["blocks"]) + _kernels(params["lm_head"])
    assert train_step_flops(model_cfg, 1, 32).total == 32 * (6 * matmuls + 12 * 2 * 64 * 32)


def test_tied_gpt2_counts_the_embedding_once_and_no_positions_biases_or_norms():
    model_cfg, params = _params("gpt2")
    matmuls = _kernels(params) + params["token_embed"]["embedding"].size
    assert train_step_flops(model_cfg, 1, 32).total == 32 * (6 * matmuls + 12 * 2 * 64 * 32)
