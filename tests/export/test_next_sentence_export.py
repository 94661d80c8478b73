"""BERT with its next-sentence head against transformers' BertForPreTraining, both ways."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.export.convert import from_hf, to_hf
from jaxlm.export.hf_import import import_hf
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

V, L = 61, 10
# Two sentence pairs; the second is 6 tokens and 4 padding (attention_mask 0 / segment 0).
MASK_BxL = np.array([[1] * L, [1] * 6 + [0] * 4], np.int32)
TYPES_BxL = np.array([[0] * 4 + [1] * 6, [0] * 3 + [1] * 3 + [0] * 4], np.int32)
IDS_BxL = np.random.default_rng(0).integers(5, V, (2, L)) * MASK_BxL
SIZES = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, max_position_embeddings=16
)


def _hf_outputs(model) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(IDS_BxL),
            attention_mask=torch.tensor(MASK_BxL),
            token_type_ids=torch.tensor(TYPES_BxL),
        )
    return out.prediction_logits.numpy(), out.seq_relationship_logits.numpy()


def _our_outputs(cfg: ModelConfig, params: dict) -> tuple[np.ndarray, np.ndarray]:
    model = nnx.merge(nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[0], params)
    positions = jnp.broadcast_to(jnp.arange(L), (2, L))
    logits, pair_logits = model.with_next_sentence(
        jnp.asarray(IDS_BxL), positions, jnp.asarray(MASK_BxL), jnp.asarray(TYPES_BxL)
    )
    return np.asarray(logits), np.asarray(pair_logits)


def _assert_same(ours, theirs):
    (logits, pairs), (hf_logits, hf_pairs) = ours, theirs
    real = MASK_BxL.astype(bool)
    np.testing.assert_allclose(logits[real], hf_logits[real], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(pairs, hf_pairs, atol=1e-4, rtol=1e-4)


def test_import_bert_for_pretraining_keeps_the_next_sentence_head(tmp_path):
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(
        transformers.BertConfig(vocab_size=V, **SIZES, attn_implementation="eager")
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "hf")
    cfg, params = from_hf(str(tmp_path / "hf"))
    assert cfg.next_sentence_head
    _assert_same(_our_outputs(cfg, params), _hf_outputs(model))

    # Imported into a run, the config keeps training both heads.
    import_hf(str(tmp_path / "hf"), str(tmp_path / "run"))
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["data"]["next_sentence"] is True


def test_export_with_the_next_sentence_head_loads_as_bert_for_pretraining(tmp_path):
    cfg = ModelConfig.for_family(
        "bert",
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=4,
        mlp_dim=48,
        max_len=16,
        next_sentence_head=True,
        init_std=0.2,
    )
    params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(3))))
    to_hf(cfg, params, str(tmp_path))
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["architectures"] == ["BertForPreTraining"]
    pretraining = transformers.BertForPreTraining.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ours = _our_outputs(cfg, params)
    _assert_same(ours, _hf_outputs(pretraining))
    # AutoModelForMaskedLM takes the same file and gives the same masked-LM logits.
    masked = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    with torch.no_grad():
        logits = masked(
            input_ids=torch.tensor(IDS_BxL),
            attention_mask=torch.tensor(MASK_BxL),
            token_type_ids=torch.tensor(TYPES_BxL),
        ).logits.numpy()
    real = MASK_BxL.astype(bool)
    np.testing.assert_allclose(ours[0][real], logits[real], atol=1e-4, rtol=1e-4)


def test_a_masked_lm_file_carrying_the_next_sentence_head_imports_without_it(tmp_path):
    # Google's BERT checkpoints declare BertForMaskedLM but ship the pooler and next-sentence classifier.
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(transformers.BertConfig(vocab_size=V, **SIZES)).eval()
    model.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    config["architectures"] = ["BertForMaskedLM"]
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    cfg, params = from_hf(str(tmp_path))
    assert not cfg.next_sentence_head and "next_sentence_head" not in params
