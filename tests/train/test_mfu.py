"""MFU: the analytic FLOPs count against a hand count, and the peak table."""

import types

import jax
import pytest
from flax import nnx

from jaxlm.config import base_config
from jaxlm.model import Transformer, model_config_from
from jaxlm.train.mfu import PEAK_FLOPS_ENV, flops_per_token, mfu, peak_flops


def _model(family: str):
    config = base_config()
    config.model.family, config.model.num_layers, config.model.width, config.model.num_heads = family, 2, 64, 4
    config.data.seq_len = 32
    model_cfg = model_config_from(config, 100)
    params = nnx.to_pure_dict(nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))[1])
    return model_cfg, params


def _size(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


def test_untied_llama_counts_its_head_but_not_its_input_lookup():
    model_cfg, params = _model("llama")
    matmuls = _size(params["blocks"]) + _size(params["lm_head"]) + _size(params["final_norm"])
    assert flops_per_token(model_cfg, params, 32) == 6 * matmuls + 12 * 2 * 64 * 32


def test_tied_gpt2_counts_the_embedding_once_and_no_positions():
    model_cfg, params = _model("gpt2")
    counted = _size(params) - _size(params["position_embed"])
    assert flops_per_token(model_cfg, params, 32) == 6 * counted + 12 * 2 * 64 * 32


def _device(platform: str, kind: str):
    return types.SimpleNamespace(platform=platform, device_kind=kind)


@pytest.mark.parametrize("kind, peak", [("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5", 459e12),
                                        ("TPU v5p", 459e12), ("TPU v6 lite", 918e12),
                                        ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA H100 80GB HBM3", 989e12),
                                        ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12)])
def test_peak_flops_by_device_kind(kind, peak, monkeypatch):
    monkeypatch.delenv(PEAK_FLOPS_ENV, raising=False)
    assert peak_flops(_device("tpu" if "TPU" in kind else "gpu", kind)) == peak


def test_a_cpu_has_no_peak_unless_one_is_measured(monkeypatch):
    monkeypatch.delenv(PEAK_FLOPS_ENV, raising=False)
    assert peak_flops(_device("cpu", "cpu")) is None
    assert mfu(1e9, 0.1, None, 1) is None
    monkeypatch.setenv(PEAK_FLOPS_ENV, "2.5e11")
    assert peak_flops(_device("cpu", "cpu")) == 2.5e11


def test_mfu_is_achieved_over_peak_flops():
    assert mfu(flops_per_step=4e12, seconds_per_step=0.5, peak_per_device=1e12, num_devices=16) == 0.5
