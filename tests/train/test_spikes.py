"""Loss spikes are named once the detector has seen enough losses, and not before; steady noise is not one."""

import numpy as np

from jaxlm.train.spikes import SpikeDetector


def test_a_jump_after_steady_losses_is_a_spike_and_noise_is_not():
    detector = SpikeDetector(threshold=6.0)
    rng = np.random.default_rng(0)
    losses = 3.0 - 0.01 * np.arange(40) + rng.normal(0, 0.02, 40)  # a slowly falling, noisy loss
    assert all(detector.check(float(loss)) is None for loss in losses)
    sigmas = detector.check(4.0)  # about 1.4 above a loss of 2.6 whose sd is a few hundredths
    assert sigmas is not None and sigmas > 6.0
    assert detector.check(float(losses[-1])) is None  # back to normal


def test_nothing_is_a_spike_during_warmup_or_when_off():
    early = SpikeDetector(threshold=6.0, warmup=10)
    assert [early.check(x) for x in (3.0, 3.0, 100.0)] == [None, None, None]
    off = SpikeDetector(threshold=0.0)
    assert all(off.check(x) is None for x in [3.0] * 20 + [100.0])
