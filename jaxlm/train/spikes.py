"""Loss spikes: a logged loss far above the recent ones, named in the log so an unstable run is seen early."""

from __future__ import annotations

import math


class SpikeDetector:
    """Running mean and variance of the logged losses (exponentially weighted over about `window` log points);
    a loss more than `threshold` standard deviations above the mean, once `warmup` losses were seen, is a spike.

    Spikes do not enter the statistics, so one spike does not hide the next.
    """

    def __init__(self, threshold: float, window: int = 50, warmup: int = 10):
        self.threshold, self.warmup = threshold, warmup
        self.decay = 1.0 - 1.0 / window
        self.seen, self.mean, self.var = 0, 0.0, 0.0

    def check(self, loss: float) -> float | None:
        """How many standard deviations above the running mean `loss` is when it is a spike, else None."""
        if not self.threshold or not math.isfinite(loss):
            return None
        if self.seen >= self.warmup and self.var > 0:
            sigmas = (loss - self.mean) / math.sqrt(self.var)
            if sigmas > self.threshold:
                return sigmas
        if self.seen == 0:
            self.mean = loss
        else:
            delta = loss - self.mean
            self.mean += (1 - self.decay) * delta
            self.var = self.decay * (self.var + (1 - self.decay) * delta * delta)
        self.seen += 1
        return None
