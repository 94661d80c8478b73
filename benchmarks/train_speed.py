"""Train-step speed of a recipe: step time, tokens/s, MFU, compile time, peak memory; optionally vs PyTorch.

    JAX_PLATFORMS=cpu python benchmarks/train_speed.py --config=configs/shakespeare_char.py [--vs=torch]
    JAX_PLATFORMS=cpu python benchmarks/train_speed.py --config=configs/shakespeare_char.py --vs=torch \
        --config.model.num_layers=6 --config.model.width=384 --config.model.num_heads=6 \
        --config.data.seq_len=256 --config.data.batch_size=64

jaxlm's side is the very step the loop runs (`make_trainer`'s jitted, donating train step) on synthetic
batches of the recipe's shape, on this host's devices (`--config.mesh.cpu_devices=2` splits a 2-core CPU
into two, as run_pretrain.py does). `--vs=torch` trains the same GPT-2 shape with
`transformers`' GPT2LMHeadModel and torch.optim.AdamW (same hyper-parameters, clipping, decay mask).
Each side runs in its own fresh process per round, the two alternating, so that load from other jobs
on the machine hits both alike and each process's peak RSS is its own; figures are medians over rounds.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_ROOT = pathlib.Path(__file__).resolve().parents[1]
config_flags.DEFINE_config_file(
    "config", str(_ROOT / "configs" / "shakespeare_char.py"), "Recipe file; override fields with --config.FIELD=VALUE."
)
flags.DEFINE_enum("vs", "none", ["none", "torch"], "A peer to run beside jaxlm in alternating rounds.")
flags.DEFINE_integer("rounds", 3, "Rounds; each runs every side once in a fresh process.")
flags.DEFINE_integer("steps", 20, "Timed steps per round, after the warm-up steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per round after compiling.")
flags.DEFINE_integer("vocab_size", 65, "Vocabulary when the recipe takes it from its tokenizer (65: chars).")
flags.DEFINE_enum("worker", "", ["", "jaxlm", "torch"], "Internal: run one side once and print JSON.")


def _vocab(config) -> int:
    return flags.FLAGS.vocab_size if config.model.vocab_size == -1 else config.model.vocab_size


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _synthetic_tokens(config, vocab: int) -> np.ndarray:
    """[B, L+1] random token ids, the same for both sides."""
    rng = np.random.default_rng(0)
    return rng.integers(0, vocab, (config.data.batch_size, config.data.seq_len + 1), dtype=np.int32)


def _time_steps(step, sync) -> list[float]:
    """Seconds of each timed step, each one waited for, after the warm-up steps."""
    for _ in range(flags.FLAGS.warmup):
        sync(step())
    times = []
    for _ in range(flags.FLAGS.steps):
        start = time.perf_counter()
        sync(step())
        times.append(time.perf_counter() - start)
    return times


def _cpu_matmul_peak() -> float:
    """Measured float32 FLOP/s of a 2048^3 matmul on this device (the CPU has no table entry)."""
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = min(_timed(lambda: matmul(a).block_until_ready()) for _ in range(5))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_jaxlm(config) -> dict:
    """One jaxlm measurement: compile, warm up, time the loop's train step."""
    from jaxlm.parallel.distributed import split_cpu

    split_cpu(config.mesh.cpu_devices)  # as run_pretrain.py does, before jax touches a device
    import jax
    import jax.numpy as jnp

    from jaxlm.config import model_config
    from jaxlm.model.flops import train_step_flops
    from jaxlm.parallel.mesh import make_mesh
    from jaxlm.train import mfu
    from jaxlm.train.trainer import make_trainer

    devices = jax.local_devices()
    device = devices[0]
    vocab = _vocab(config)
    model_cfg = model_config(config, vocab)
    trainer = make_trainer(config, model_cfg, make_mesh(config.mesh, devices))
    tokens_BxL1 = _synthetic_tokens(config, vocab)
    B, L = config.data.batch_size, config.data.seq_len
    batch = {
        "inputs": tokens_BxL1[:, :-1],
        "targets": tokens_BxL1[:, 1:],
        "weights": np.ones((B, L), np.float32),
        "positions": np.broadcast_to(np.arange(L, dtype=np.int32), (B, L)),
        "segment_ids": np.ones((B, L), np.int32),
    }
    batch = {k: jax.device_put(v, trainer.batch_shardings[k]) for k, v in batch.items()}
    state = trainer.init_state(config.seed)

    start = time.perf_counter()
    compiled = trainer.compile_train_step(state, batch)
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) * len(devices) if cost else 0.0  # cost is per device

    def step():
        nonlocal state
        state, metrics = compiled(state, batch)
        return metrics["loss"]

    times = _time_steps(step, lambda loss: loss.block_until_ready())
    flops_per_step = train_step_flops(model_cfg, B, L).total
    # A table peak is per chip; the CPU's measured peak is the whole host's, however it is split.
    peak = (mfu.peak_flops(device) or 0) * len(devices) or (_cpu_matmul_peak() if device.platform == "cpu" else None)
    memory = device.memory_stats() if device.platform != "cpu" else None
    return {
        "step_s": statistics.median(times),
        "compile_s": compile_s,
        "peak_memory": (memory or {}).get("peak_bytes_in_use", _peak_rss_bytes()),
        "memory_kind": "device peak" if memory else "host peak RSS",
        "flops_per_step": flops_per_step,
        "xla_flops_per_step": xla_flops,
        "peak_flops": peak,
        "device": f"{len(devices)} x {device.platform} ({device.device_kind})",
        "final_loss": float(jnp.asarray(step())),
    }


def run_torch(config) -> dict:
    """One peer measurement: GPT2LMHeadModel + torch.optim.AdamW in the recipe's shape."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    assert config.model.family == "gpt2", "the torch peer is a GPT-2; compare a gpt2-family recipe"
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(config.seed)
    m, t = config.model, config.train
    vocab = _vocab(config)
    hf_config = GPT2Config(
        vocab_size=vocab,
        n_positions=config.data.seq_len,
        n_embd=m.width,
        n_layer=m.num_layers,
        n_head=m.num_heads,
        n_inner=None if m.mlp_dim == -1 else m.mlp_dim,
        resid_pdrop=m.dropout,
        embd_pdrop=m.dropout,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        activation_function="gelu_new",
        tie_word_embeddings=True,
    )
    start = time.perf_counter()
    model = GPT2LMHeadModel(hf_config)
    model.train()
    # jaxlm's decay mask: matrices, and embeddings when train.decay_embeddings (nanoGPT's rule).
    decayed, plain = [], []
    for name, p in model.named_parameters():
        is_embedding = name.endswith(("wte.weight", "wpe.weight"))
        (decayed if p.dim() >= 2 and (t.decay_embeddings or not is_embedding) else plain).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": t.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=t.learning_rate,
        betas=(t.b1, t.b2),
        eps=t.eps,
    )
    setup_s = time.perf_counter() - start
    tokens_BxL1 = torch.from_numpy(_synthetic_tokens(config, vocab).astype(np.int64))
    inputs_BxL, targets_BxL = tokens_BxL1[:, :-1], tokens_BxL1[:, 1:]

    def step():
        logits_BxLxV = model(inputs_BxL).logits
        loss = F.cross_entropy(logits_BxLxV.reshape(-1, vocab).float(), targets_BxL.reshape(-1))
        loss.backward()
        if t.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    times = _time_steps(step, lambda loss: loss.item())
    return {
        "step_s": statistics.median(times),
        "compile_s": setup_s,
        "peak_memory": _peak_rss_bytes(),
        "memory_kind": "host peak RSS",
        "device": f"cpu (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, attention {model.config._attn_implementation})",
        "final_loss": float(step().item()),
    }


def _run_worker(side: str) -> dict:
    """Runs this script again as a fresh process measuring `side` once; its JSON result."""
    argv = [sys.executable, __file__, f"--worker={side}"] + [
        a for a in sys.argv[1:] if not a.startswith(("--vs", "--rounds", "--worker"))
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _row(name: str, ours: float | None, peer: float | None, fmt: str) -> str:
    cells = [fmt.format(ours) if ours is not None else "-"]
    if peer is not None or flags.FLAGS.vs != "none":
        cells.append(fmt.format(peer) if peer is not None else "-")
        cells.append(f"{ours / peer:.2f}" if ours and peer else "-")
    return f"| {name} | " + " | ".join(cells) + " |"


def main(argv: list[str]) -> None:
    del argv
    f = flags.FLAGS
    config = f.config
    if f.worker:
        print(json.dumps((run_jaxlm if f.worker == "jaxlm" else run_torch)(config)))
        return
    sides = ["jaxlm"] + ([f.vs] if f.vs != "none" else [])
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for round_index in range(f.rounds):
        # Alternate who goes first, so neither side always meets the machine in the same state.
        for side in sides if round_index % 2 == 0 else sides[::-1]:
            result = _run_worker(side)
            results[side].append(result)
            print(
                f"round {round_index + 1} {side}: {result['step_s'] * 1e3:.1f} ms/step, "
                f"peak {result['peak_memory'] / 2**20:.0f} MiB",
                flush=True,
            )

    def median(side: str, key: str) -> float | None:
        values = [r[key] for r in results.get(side, []) if r.get(key) is not None]
        return statistics.median(values) if values else None

    B, L = config.data.batch_size, config.data.seq_len
    ours, peer = results["jaxlm"][0], f.vs if f.vs != "none" else None
    step_ours, step_peer = median("jaxlm", "step_s"), median(peer, "step_s") if peer else None
    peak = median("jaxlm", "peak_flops")
    flops = ours["flops_per_step"]
    m = config.model
    print(
        f"\n{m.family}: {m.num_layers} layers, width {m.width}, {m.num_heads} heads, context {L}, "
        f"batch {B}, vocab {_vocab(config)}; {f.rounds} rounds x {f.steps} steps (medians)"
    )
    print(f"jaxlm device: {ours['device']}" + (f"; peer: {results[peer][0]['device']}" if peer else ""))
    print(
        f"model FLOPs per step: analytic {flops:.4g}, XLA cost analysis {ours['xla_flops_per_step']:.4g} "
        f"(ratio {ours['xla_flops_per_step'] / flops:.2f}); peak {peak:.4g} FLOP/s"
        + (" (measured f32 matmul)" if "cpu" in ours["device"] else "")
    )
    header = "| figure | jaxlm |" + (f" {peer} | jaxlm/{peer} |" if peer else "")
    print(header)
    print("| --- " * (header.count("|") - 1) + "|")
    print(_row("step time (ms)", step_ours * 1e3, step_peer * 1e3 if peer else None, "{:.1f}"))
    print(_row("tokens/s", B * L / step_ours, B * L / step_peer if peer else None, "{:,.0f}"))
    print(
        _row(
            "MFU (%)",
            100 * flops / step_ours / peak if peak else None,
            100 * flops / step_peer / peak if peer and peak else None,
            "{:.1f}",
        )
    )
    print(
        _row("compile / setup (s)", median("jaxlm", "compile_s"), median(peer, "compile_s") if peer else None, "{:.2f}")
    )
    print(
        _row(
            f"peak memory (MiB, {ours['memory_kind']})",
            median("jaxlm", "peak_memory") / 2**20,
            median(peer, "peak_memory") / 2**20 if peer else None,
            "{:.0f}",
        )
    )


if __name__ == "__main__":
    app.run(main)
