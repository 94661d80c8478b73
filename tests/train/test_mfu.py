"""MFU: the peak table and the ratio (the FLOPs themselves are jaxlm/model/flops.py's, tested there)."""

import types

import pytest

from jaxlm.train.mfu import PEAK_FLOPS_ENV, mfu, peak_flops


def _device(platform: str, kind: str):
    return types.SimpleNamespace(platform=platform, device_kind=kind)


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("TPU v4", 275e12),
        ("TPU v5 lite", 197e12),
        ("TPU v5", 459e12),
        ("TPU v5p", 459e12),
        ("TPU v6 lite", 918e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
    ],
)
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
