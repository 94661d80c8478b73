"""Model FLOPs utilisation: a step's analytic FLOPs (jaxlm.model.flops) over the devices' peak.

The FLOPs are the model's, counted once for the MFU a run prints and the counts `jaxlm.aot` prints:
6 per matmul parameter per token plus attention's score and value products; rematerialisation's
recomputation is not counted, as MFU counts the model's work, not the hardware's.
"""

from __future__ import annotations

import os

import jax

# Dense bf16 peak FLOP/s per device, by a substring of `device.device_kind` (lower case); the
# first match wins, so the more specific names come first.
PEAK_FLOPS = (
    ("v5 lite", 197e12),
    ("v5e", 197e12),
    ("v5p", 459e12),
    ("v5", 459e12),
    ("v6 lite", 918e12),
    ("v6e", 918e12),
    ("v4", 275e12),
    ("a100", 312e12),
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("h200", 989e12),
)
# A measured peak for devices the table lacks (a CPU, say), in FLOP/s per device.
PEAK_FLOPS_ENV = "JAXLM_PEAK_FLOPS"


def peak_flops(device: jax.Device) -> float | None:
    """Peak FLOP/s of one device: $JAXLM_PEAK_FLOPS if set, else the table's, else None (unknown)."""
    if os.environ.get(PEAK_FLOPS_ENV):
        return float(os.environ[PEAK_FLOPS_ENV])
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    return next((flops for name, flops in PEAK_FLOPS if name in kind), None)


def mfu(
    flops_per_step: float, seconds_per_step: float, peak_per_device: float | None, num_devices: int
) -> float | None:
    """The fraction of the devices' peak the step's model FLOPs used; None when the peak is unknown."""
    if peak_per_device is None or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / (peak_per_device * num_devices)
