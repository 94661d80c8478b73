"""The optimizers side by side: per-chip state bytes on a pod (AOT), loss after the default run, LAMB at 8x batch,
and float16 with loss scaling against float32. Prints markdown tables for benchmarks/RESULTS.md.

    python benchmarks/optimizers.py --part=state     # llama_1b on its README slice, for each optimizer (needs libtpu)
    python benchmarks/optimizers.py --part=loss      # the default run (450 steps, same data and seed) per optimizer
    python benchmarks/optimizers.py --part=lamb      # bert_tiny: AdamW at its batch vs LAMB at 8x, per token seen
    python benchmarks/optimizers.py --part=fp16      # the default run in float32 and in float16 with loss scaling

Each run is `run_pretrain.py` (or `python -m jaxlm.aot`) in a subprocess, one at a time; the losses are
read from each run's metrics.jsonl. Config overrides after `--` go to every run (the tests shrink the runs so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


OVERRIDES: list[str] = []  # from the command line, after each run's own flags


def _pretrain(workdir: str, *flags: str) -> list[dict]:
    """The records of a run of run_pretrain.py with `flags`."""
    command = [sys.executable, os.path.join(ROOT, "run_pretrain.py"), f"--workdir={workdir}", *flags, *OVERRIDES]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _last(records: list[dict], key: str) -> float:
    return [r[key] for r in records if key in r][-1]


def state_bytes(recipe: str, topology: str, optimizers: list[str]) -> None:
    print(f"| optimizer | {recipe} on {topology}: parameters per chip | optimizer state per chip | vs AdamW |")
    print("| --- | --- | --- | --- |")
    adamw = None
    for name in optimizers:
        command = [
            sys.executable,
            "-m",
            "jaxlm.aot",
            f"--config={ROOT}/configs/{recipe}.py",
            f"--topology={topology}",
            f"--config.train.optimizer={name}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        found = re.search(r"state \| per chip: parameters ([\d.]+) GiB \+ \w+ state ([\d.]+) GiB", result.stdout)
        if not found:
            raise SystemExit(f"{' '.join(command)}: no state line\n{result.stdout}\n{result.stderr[-2000:]}")
        params, state = float(found.group(1)), float(found.group(2))
        adamw = adamw if adamw is not None else state
        print(f"| {name} | {params:.3f} GiB | {state:.3f} GiB | {state / adamw:.2f}x |", flush=True)


def default_run_losses(optimizers: list[str], work: str) -> None:
    print("| optimizer | train loss (last logged) | val loss at step 450 | val accuracy |")
    print("| --- | --- | --- | --- |")
    for name in optimizers:
        records = _pretrain(os.path.join(work, name), f"--config.train.optimizer={name}")
        print(
            f"| {name} | {_last(records, 'loss'):.4f} | {_last(records, 'val_loss'):.4f} | "
            f"{_last(records, 'val_accuracy'):.3f} |",
            flush=True,
        )


def lamb_at_8x(work: str, base_steps: int) -> None:
    """AdamW at bert_tiny's batch and LAMB at 8x the batch over the same tokens (1/8 the steps, 1/8 the warmup),
    its peak learning rate scaled by sqrt(8) as in You et al. (2020); evaluated at the same 8 token counts."""
    recipe = f"--config={ROOT}/configs/bert_tiny.py"
    base_batch, base_warmup, base_lr = 12, base_steps * 100 // 450, 1e-3
    runs = {
        "adamw, batch 12": [
            recipe,
            f"--config.train.steps={base_steps}",
            f"--config.train.warmup_steps={base_warmup}",
            f"--config.eval.every={base_steps // 8}",
        ],
        "lamb, batch 96": [
            recipe,
            "--config.train.optimizer=lamb",
            f"--config.data.batch_size={base_batch * 8}",
            f"--config.train.steps={base_steps // 8}",
            f"--config.train.warmup_steps={base_warmup // 8}",
            f"--config.train.learning_rate={base_lr * math.sqrt(8):.6g}",
            f"--config.eval.every={base_steps // 64}",
            "--config.checkpoint.every=0",
        ],
    }
    curves = {}
    for name, flags in runs.items():
        records = _pretrain(os.path.join(work, name.split(",")[0]), *flags)
        batch = base_batch * (8 if name.startswith("lamb") else 1)
        curves[name] = {r["step"] * batch * 128: r["val_loss"] for r in records if "val_loss" in r}
    tokens = sorted(set(curves["adamw, batch 12"]) & set(curves["lamb, batch 96"]))
    print("| tokens seen | " + " | ".join(f"{name}: val loss" for name in curves) + " |")
    print("| --- | " + " | ".join("---" for _ in curves) + " |")
    for t in tokens:
        print(f"| {t:,} | " + " | ".join(f"{curves[name][t]:.4f}" for name in curves) + " |")


def fp16_vs_fp32(work: str) -> None:
    print("| dtype | val loss at step 450 | overflow steps skipped | final loss scale |")
    print("| --- | --- | --- | --- |")
    losses = {}
    for dtype in ("float32", "float16"):
        records = _pretrain(os.path.join(work, dtype), f"--config.model.dtype={dtype}")
        losses[dtype] = _last(records, "val_loss")
        overflows = _last(records, "overflow_steps") if dtype == "float16" else "-"
        scale = f"{_last(records, 'loss_scale'):.0f}" if dtype == "float16" else "-"
        print(f"| {dtype} | {losses[dtype]:.4f} | {overflows} | {scale} |", flush=True)
    print(f"\nfloat16 / float32 val loss: {losses['float16'] / losses['float32']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["state", "loss", "lamb", "fp16"], required=True)
    parser.add_argument("--optimizers", default="adamw,adafactor,muon")
    parser.add_argument("--recipe", default="llama_1b")
    parser.add_argument("--topology", default="v5p-64")
    parser.add_argument("--lamb_steps", type=int, default=448, help="AdamW's steps (a multiple of 64); LAMB's: 1/8")
    parser.add_argument("overrides", nargs="*", help="--config.FIELD=VALUE for every run (after --)")
    args = parser.parse_args()
    OVERRIDES.extend(args.overrides)
    optimizers = args.optimizers.split(",")
    with tempfile.TemporaryDirectory(prefix="jaxlm-optimizers-") as work:
        if args.part == "state":
            state_bytes(args.recipe, args.topology, optimizers)
        elif args.part == "loss":
            default_run_losses(optimizers, work)
        elif args.part == "lamb":
            lamb_at_8x(work, args.lamb_steps)
        else:
            fp16_vs_fp32(work)


if __name__ == "__main__":
    main()
