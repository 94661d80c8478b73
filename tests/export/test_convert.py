"""HF export and import against transformers (PyTorch, CPU): same logits both ways, clear errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.export.convert import from_hf, to_hf
from jaxlm.export.errors import ExportError
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

V, L = 61, 10
# Two rows; the second has 4 padding tokens at the end (attention_mask 0 / segment 0).
MASK_BxL = np.array([[1] * L, [1] * 6 + [0] * 4], np.int32)
IDS_BxL = np.random.default_rng(0).integers(5, V, (2, L)) * MASK_BxL

HF_MODELS = {  # name: (HF class, config)
    "gpt2": ("GPT2LMHeadModel", dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_inner=48, n_positions=16)),
    "llama": (
        "LlamaForCausalLM",
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,
            max_position_embeddings=16,
            rope_theta=500.0,
        ),
    ),
    "llama_tied": (
        "LlamaForCausalLM",
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            intermediate_size=48,
            max_position_embeddings=16,
            tie_word_embeddings=True,
        ),
    ),
    "bert": (
        "BertForMaskedLM",
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=16,
        ),
    ),
    "bert_encoder": (
        "BertModel",
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=16,
        ),
    ),
}


def _hf_model(name: str):
    """A small random transformers model, weights spread wider than init so logits are far from 0."""
    class_name, kwargs = HF_MODELS[name]
    model_class = getattr(transformers, class_name)
    torch.manual_seed(0)
    model = model_class(model_class.config_class(**kwargs, attn_implementation="eager")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _hf_outputs(model, ids_BxL=IDS_BxL, mask_BxL=MASK_BxL) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids_BxL), attention_mask=torch.tensor(mask_BxL))
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def _our_outputs(cfg: ModelConfig, params: dict, hidden: bool = False) -> np.ndarray:
    model = nnx.merge(nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[0], params)
    positions = jnp.broadcast_to(jnp.arange(L), (2, L))
    run = model.encode if hidden else model
    return np.asarray(run(jnp.asarray(IDS_BxL), positions, jnp.asarray(MASK_BxL)))


def _assert_close_where_real(ours, theirs):
    real = MASK_BxL.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], rtol=1e-4, atol=1e-4)
    assert np.abs(theirs[real]).max() > 0.5  # the comparison is of real signal, not of near-zeros


def _load_hf(directory: str, class_name: str):
    model, info = getattr(transformers, class_name).from_pretrained(directory, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_hf_model_imports_with_its_logits_and_exports_back(name, tmp_path):
    hf = _hf_model(name)
    hf.save_pretrained(tmp_path / "hf")
    cfg, params = from_hf(str(tmp_path / "hf"))
    encoder_only = name == "bert_encoder"
    _assert_close_where_real(_our_outputs(cfg, params, hidden=encoder_only), _hf_outputs(hf))

    # Back out, in shards small enough to need an index file; transformers reads every weight.
    files = to_hf(cfg, params, str(tmp_path / "out"), max_shard_bytes=20_000)
    assert "model.safetensors.index.json" in files and len(files) > 4
    class_name = "BertForMaskedLM" if encoder_only else HF_MODELS[name][0]
    reloaded = _load_hf(str(tmp_path / "out"), class_name)
    theirs = _hf_outputs(reloaded.bert if encoder_only else reloaded)
    _assert_close_where_real(theirs, _hf_outputs(hf))


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_jaxlm_model_exports_with_its_logits_and_imports_back(family, tmp_path):
    cfg = ModelConfig.for_family(
        family,
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2 if family == "llama" else 4,
        mlp_dim=48,
        max_len=16,
    )
    params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(1))))
    noise = iter(np.random.default_rng(1).normal(0, 0.2, (len(jax.tree.leaves(params)), 64 * 64)))
    params = jax.tree.map(lambda x: np.asarray(x) + next(noise)[: x.size].reshape(x.shape).astype(np.float32), params)
    files = to_hf(cfg, params, str(tmp_path))
    assert "model.safetensors" in files and ("generation_config.json" in files) == (family != "bert")
    hf = _load_hf(
        str(tmp_path), {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "bert": "BertForMaskedLM"}[family]
    )
    _assert_close_where_real(_our_outputs(cfg, params), _hf_outputs(hf))
    cfg_back, params_back = from_hf(str(tmp_path))
    assert cfg_back == cfg
    jax.tree.map(np.testing.assert_array_equal, params_back, params)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_a_bias_free_model_exports_with_zero_biases(family, tmp_path):
    # nanoGPT's bias=False (model.biases="none"): no bias in the blocks' dense layers or LayerNorms.
    cfg = ModelConfig.for_family(
        family,
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=48,
        max_len=16,
        use_bias=False,
        init_std=0.3,
    )
    params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(2))))
    biases = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(params)
        if "bias" in jax.tree_util.keystr(p)
    ]
    assert all("mlm_head" in name for name in biases), biases  # only BERT's head keeps its biases
    to_hf(cfg, params, str(tmp_path))
    hf = _load_hf(str(tmp_path), {"gpt2": "GPT2LMHeadModel", "bert": "BertForMaskedLM"}[family])
    _assert_close_where_real(_our_outputs(cfg, params), _hf_outputs(hf))
    # Imported back it is the same function, with explicit zero biases.
    cfg_back, params_back = from_hf(str(tmp_path))
    assert cfg_back.use_bias
    _assert_close_where_real(_our_outputs(cfg_back, params_back), _hf_outputs(hf))


def _exported_llama(tmp_path) -> str:
    _hf_model("llama").save_pretrained(tmp_path)
    return str(tmp_path)


def _edit_config(directory: str, **changes) -> None:
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(changes)
    with open(path, "w") as f:
        json.dump(config, f)


@pytest.mark.parametrize(
    "changes,message",
    [
        (
            dict(architectures=["T5ForConditionalGeneration"]),
            "architectures=.*T5ForConditionalGeneration.*not supported",
        ),
        (
            dict(intermediate_size=64),
            r"parameter model\.layers\.0\.mlp\.gate_proj\.weight: shape \(48, 32\).*\(64, 32\)",
        ),
        (dict(num_key_value_heads=4), r"parameter model\.layers\.0\.self_attn\.k_proj\.weight: shape \(16, 32\)"),
        (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 1.0}), "rope type 'llama3' is not supported"),
        (dict(attention_bias=True), "attention_bias=True is not supported"),
    ],
)
def test_bad_checkpoints_are_refused_with_the_field_or_parameter_named(changes, message, tmp_path):
    directory = _exported_llama(tmp_path)
    _edit_config(directory, **changes)
    with pytest.raises(ExportError, match=message):
        from_hf(directory)


def test_missing_files_and_unknown_parameters_are_named(tmp_path):
    with pytest.raises(ExportError, match="no config.json"):
        from_hf(str(tmp_path))
    directory = _exported_llama(tmp_path)
    tensors = safetensors_numpy.load_file(os.path.join(directory, "model.safetensors"))
    safetensors_numpy.save_file(
        {**tensors, "model.layers.0.self_attn.q_norm.weight": np.ones(8, np.float32)},
        os.path.join(directory, "model.safetensors"),
        metadata={"format": "pt"},
    )
    with pytest.raises(ExportError, match=r"parameter model\.layers\.0\.self_attn\.q_norm\.weight .*no place"):
        from_hf(directory)
    os.remove(os.path.join(directory, "model.safetensors"))
    with pytest.raises(ExportError, match="no model.safetensors or model.safetensors.index.json"):
        from_hf(directory)


def test_export_refuses_params_that_do_not_fit_the_config(tmp_path):
    cfg = ModelConfig.for_family(
        "gpt2", vocab_size=V, width=32, num_layers=2, num_heads=4, num_kv_heads=4, mlp_dim=48, max_len=16
    )
    params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(0))))
    params["blocks"]["ffn"]["up"]["kernel"] = np.zeros((2, 32, 40), np.float32)
    with pytest.raises(ExportError, match=r"parameter blocks/ffn/up/kernel: shape \(2, 32, 40\).*\(2, 32, 48\)"):
        to_hf(cfg, params, str(tmp_path))
    grouped = ModelConfig.for_family(
        "gpt2", vocab_size=V, width=32, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=48, max_len=16
    )
    with pytest.raises(ExportError, match="GPT2LMHeadModel has no grouped-query attention"):
        to_hf(grouped, params, str(tmp_path))


def test_an_untied_output_matrix_in_a_tied_family_is_refused(tmp_path):
    _hf_model("gpt2").save_pretrained(tmp_path)
    tensors = safetensors_numpy.load_file(os.path.join(tmp_path, "model.safetensors"))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1
    safetensors_numpy.save_file(tensors, os.path.join(tmp_path, "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ExportError, match="parameter lm_head.weight differs from the token embedding"):
        from_hf(str(tmp_path))
