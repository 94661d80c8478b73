"""The training loop: build data, model and optimizer from a config, train, evaluate, show a sample.

The only place that puts the rooms together. The loop never waits on the device between log
points: it dispatches step k and only then reads the metrics of the last logged step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from jaxlm import config as config_lib
from jaxlm import generate
from jaxlm.data import Data, build_data
from jaxlm.model import Transformer, model_config_from
from jaxlm.train.optimizer import make_optimizer
from jaxlm.train.step import init_state, make_eval_step, make_train_step


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, say); the message says what happened and what to try."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run reports: its last training and validation figures and its sample."""

    final_loss: float
    val_loss: float | None
    val_accuracy: float | None
    sample: str
    steps_per_second: float


def _say(line: str) -> None:
    print(line, flush=True)


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def evaluate(eval_step, params: dict, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Loss, perplexity and token accuracy over the validation batches (summed, then divided)."""
    totals = None
    for batch in batches:
        sums = eval_step(params, batch)
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    weight = max(float(totals["weight_sum"]), 1.0)
    loss = float(totals["loss_sum"]) / weight
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)),
            "val_accuracy": float(totals["correct_sum"]) / weight}


class _MetricsLog:
    """Appends one JSON object per logged step or evaluation to <workdir>/metrics.jsonl."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, "metrics.jsonl")
        open(self.path, "w").close()

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _demo(config: ml_collections.ConfigDict, graphdef, params: dict, data: Data, max_len: int) -> str:
    """A short continuation of the prompt (causal) or a fill-mask demonstration (MLM)."""
    tokenizer = data.tokenizer
    prompt_ids = tokenizer.encode(config.sample.prompt)
    if config_lib.objective(config) == "causal":
        new_ids = generate.sample(graphdef, params, prompt_ids, num_tokens=config.sample.num_tokens,
                                  max_len=max_len, temperature=config.sample.temperature,
                                  seed=config.seed, eos_id=tokenizer.eos_id)
        return config.sample.prompt + tokenizer.decode(new_ids)
    ids = [tokenizer.bos_id] + prompt_ids[:max_len - 2] + [tokenizer.eos_id]
    # Mask every seventh word piece (at least one) so the demo is the same on every run.
    masked = list(range(1, len(ids) - 1))[::7] or [1]
    corrupted = [tokenizer.mask_id if i in masked else t for i, t in enumerate(ids)]
    predictions = generate.fill_mask(graphdef, params, corrupted, top_k=3)
    lines = ["input:  " + " ".join("[MASK]" if i in masked else tokenizer.decode([t])
                                   for i, t in enumerate(ids[1:-1], start=1))]
    for i in masked:
        guesses = ", ".join(f"{tokenizer.decode([t])!r} {p:.2f}" for t, p in predictions[i])
        lines.append(f"  [MASK] at {i} (was {tokenizer.decode([ids[i]])!r}): {guesses}")
    return "\n".join(lines)


def _param_count(params: dict) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def run(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
    """Trains the model the config describes, writing the tokenizer and metrics into workdir."""
    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    data = build_data(config, workdir)
    config_lib.check_vocab(config, data.tokenizer.vocab_size)
    model_cfg = model_config_from(config, data.tokenizer.vocab_size)
    graphdef, params = nnx.split(Transformer(model_cfg, rngs=nnx.Rngs(config.seed)))
    params = nnx.to_pure_dict(params)
    optimizer, schedule = make_optimizer(config.train, params)
    state = init_state(params, optimizer)

    _say(f"jaxlm | {config.model.family} ({config_lib.objective(config)}) | "
         f"{_param_count(params) / 1e6:.2f}M parameters | {len(jax.devices())} x "
         f"{jax.devices()[0].platform} | workdir {workdir}")
    _say(f"data  | {data.summary}")

    train_step = jax.jit(
        make_train_step(graphdef, optimizer, schedule, grad_accum_steps=config.train.grad_accum_steps,
                        dropout_seed=config.seed if model_cfg.dropout > 0 else None),
        donate_argnums=0)  # the old state's buffers become the new state's
    eval_step = jax.jit(make_eval_step(graphdef))
    start = time.perf_counter()
    train_step = train_step.lower(state, data.train.batch(0)).compile()
    _say(f"compiled train step in {time.perf_counter() - start:.1f} s")

    metrics_log = _MetricsLog(workdir)
    steps, tokens_per_step = config.train.steps, config.data.batch_size * config.data.seq_len
    pending: tuple[int, dict] | None = None  # the last logged step's metrics, still on the device
    last_time, last_step, loss = time.perf_counter(), 0, float("nan")
    start_time = last_time
    val: dict[str, float] = {}

    def report_pending() -> None:
        """Prints and records the last logged step's metrics, if any are waiting on the device."""
        nonlocal last_time, last_step, pending, loss
        if pending is None:
            return
        step, metrics = pending
        pending = None
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        seconds_per_step = (now - last_time) / max(step - last_step, 1)
        last_time, last_step = now, step
        if not math.isfinite(metrics["loss"]):
            raise TrainingError(
                f"loss is {metrics['loss']} at step {step}: training diverged. Lower "
                f"train.learning_rate (now {config.train.learning_rate}), raise train.warmup_steps, "
                "or set train.clip_norm.")
        record = {"step": step, "loss": metrics["loss"], "accuracy": metrics["accuracy"],
                  "perplexity": math.exp(min(metrics["loss"], 50.0)),
                  "grad_norm": metrics["grad_norm"], "learning_rate": metrics["learning_rate"],
                  "tokens_per_second": tokens_per_step / seconds_per_step}
        metrics_log.write(record)
        _say(f"step {step:>6}/{steps} | loss {record['loss']:.4f} | acc {record['accuracy']:.3f} | "
             f"lr {record['learning_rate']:.2e} | gnorm {record['grad_norm']:.2f} | "
             f"{record['tokens_per_second']:,.0f} tok/s | {seconds_per_step * 1e3:.1f} ms/step | "
             f"eta {_format_duration(seconds_per_step * (steps - step))}")
        loss = record["loss"]

    for step in range(1, steps + 1):
        state, metrics = train_step(state, data.train.batch(step - 1))
        report_pending()  # the previous log point's metrics: ready, since this step is queued
        if step % config.log.every == 0 or step == steps:
            pending = (step, metrics)
        if data.val_batches and ((config.eval.every and step % config.eval.every == 0)
                                 or step == steps):
            report_pending()
            val = evaluate(eval_step, state.params, data.val_batches)
            metrics_log.write({"step": step, **val})
            _say(f"eval {step:>6}/{steps} | val_loss {val['val_loss']:.4f} | "
                 f"val_ppl {val['val_perplexity']:.2f} | val_acc {val['val_accuracy']:.3f}")
            last_time = time.perf_counter()  # evaluation time is not training time
    report_pending()
    elapsed = time.perf_counter() - start_time

    text = _demo(config, graphdef, state.params, data, model_cfg.max_len)
    _say("sample |\n" + text)
    _say(f"done  | {steps} steps in {_format_duration(elapsed)} ({elapsed / steps * 1e3:.1f} ms/step)")
    return RunResult(final_loss=loss, val_loss=val.get("val_loss"),
                     val_accuracy=val.get("val_accuracy"), sample=text,
                     steps_per_second=steps / elapsed)
