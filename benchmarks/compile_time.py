"""Compile time of the train step against depth: blocks are scanned, so 48 layers compile like 12.

    JAX_PLATFORMS=cpu python benchmarks/compile_time.py [--layers=12,48] [--width=768] [--repeats=2]

Builds the gpt2-family step of `configs/gpt2_small.py`'s shape (width, heads, context) at each depth
on one CPU device, at a small batch so that compiling, not the model's size, is what is timed, and
reports the best of --repeats runs of lowering (trace to StableHLO) and of compiling (XLA).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from jaxlm.config import base_config, model_config  # noqa: E402
from jaxlm.parallel.mesh import make_mesh  # noqa: E402
from jaxlm.train.trainer import make_trainer, with_shardings  # noqa: E402

flags.DEFINE_list("layers", ["12", "48"], "Depths to compile.")
flags.DEFINE_integer("width", 768, "Model width (heads = width / 64).")
flags.DEFINE_integer("seq_len", 1024, "Context length.")
flags.DEFINE_integer("batch_size", 2, "Rows per step.")
flags.DEFINE_integer("vocab_size", 50304, "Vocabulary size.")
flags.DEFINE_integer("repeats", 2, "Compiles per depth; the best is reported.")


def time_compile(num_layers: int) -> tuple[float, float]:
    """Seconds to lower and to compile a fresh train step of `num_layers` blocks."""
    f = flags.FLAGS
    config = base_config()
    config.model.update(
        family="gpt2", num_layers=num_layers, width=f.width, num_heads=f.width // 64, vocab_size=f.vocab_size
    )
    config.data.update(seq_len=f.seq_len, batch_size=f.batch_size)
    mesh = make_mesh(config.mesh, jax.devices()[:1])
    trainer = make_trainer(config, model_config(config, f.vocab_size), mesh)
    state = with_shardings(trainer.abstract_state, trainer.state_sharding)
    start = time.perf_counter()
    lowered = trainer.train_step.lower(state, trainer.abstract_batch(f.batch_size, f.seq_len))
    lowered_at = time.perf_counter()
    lowered.compile()
    return lowered_at - start, time.perf_counter() - lowered_at


def main(_) -> None:
    f = flags.FLAGS
    time_compile(1)  # warm up: first-use costs of jax and XLA are not the step's
    print(
        f"gpt2 family, width {f.width}, {f.width // 64} heads, batch {f.batch_size} x {f.seq_len}, "
        f"vocab {f.vocab_size}, 1 {jax.devices()[0].platform} device"
    )
    print("| layers | lower (s) | compile (s) | lower + compile (s) |")
    print("| --- | --- | --- | --- |")
    for num_layers in map(int, f.layers):
        runs = [time_compile(num_layers) for _ in range(f.repeats)]
        lower, compile_ = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"| {num_layers} | {lower:.2f} | {compile_:.2f} | {lower + compile_:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
