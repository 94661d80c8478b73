"""The training loop: build data, mesh, model and optimizer from a config; resume; train; save.

The only place that puts the rooms together. The loop never waits on the device between log
points: it dispatches step k and only then reads the metrics of the last logged step. It saves a
checkpoint every `checkpoint.every` steps, at the end, and when SIGTERM/SIGINT asks it to stop,
and starts again from the newest good checkpoint when the same command runs on the same workdir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time

import jax
import ml_collections
import numpy as np

from jaxlm import config as config_lib
from jaxlm import generate
from jaxlm.data import Data, build_data, host_rows
from jaxlm.model import model_config_from
from jaxlm.parallel import make_mesh
from jaxlm.train import partition
from jaxlm.train.checkpoint import (Checkpointer, CheckpointError, checkpoint_dir, now_iso,
                                    reading_step, tokenizer_record)
from jaxlm.train.guards import StopSignals, WorkdirLock, make_workdir
from jaxlm.train.mfu import flops_per_token, mfu, peak_flops
from jaxlm.train.progress import Progress, eval_line, format_duration
from jaxlm.train.step import TrainState
from jaxlm.train.summary import start_lines
from jaxlm.train.trainer import Trainer, make_trainer, with_shardings
from jaxlm.train.writers import MetricWriter

# Config fields a resumed run must share with its checkpoint: they decide the parameters' shapes.
_MODEL_FIELDS = ("family", "num_layers", "width", "num_heads", "num_kv_heads", "mlp_dim", "max_len",
                 "vocab_size", "biases")
# Other config fields that change the parameters a checkpoint holds.
_PARAMETER_FIELDS = (*(f"model.{field}" for field in _MODEL_FIELDS), "data.next_sentence")


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, say); the message says what happened and what to try."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT stopped the run after it saved a checkpoint; the same command resumes it."""


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run reports: its last training and validation figures and its sample."""

    final_loss: float
    val_loss: float | None
    val_accuracy: float | None
    sample: str
    steps_per_second: float
    start_step: int  # 0 for a fresh run, the restored checkpoint's step for a resumed one


def _is_main() -> bool:
    return jax.process_index() == 0


def _say(line: str) -> None:
    if _is_main():
        print(line, flush=True)


def _collectives_share_a_thread_pool() -> bool:
    """Whether this process drives several CPU devices (mesh.cpu_devices > 1), whose all-reduces meet in process.

    XLA:CPU runs every device's part of a program on one shared thread pool. Eval steps depend only on the
    parameters, so dispatched back to back several start at once; each part that reaches the all-reduce
    holds a pool thread while it waits for its partners, and with as many programs in flight as threads
    the partners never get one: a deadlock that XLA ends by aborting after 40 s. (Train steps are chained
    by their state, so they never overlap.)
    """
    return jax.local_devices()[0].platform == "cpu" and jax.local_device_count() > 1


def evaluate(eval_step, params: dict, batches: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Loss, perplexity and token accuracy over the validation batches (summed, then divided), and
    next-sentence loss and accuracy for sentence-pair batches."""
    totals = None
    one_at_a_time = _collectives_share_a_thread_pool()
    for batch in batches:
        sums = eval_step(params, batch)
        if one_at_a_time:
            jax.block_until_ready(sums)
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    weight = max(float(totals["weight_sum"]), 1.0)
    loss = float(totals["loss_sum"]) / weight
    val = {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)),
           "val_accuracy": float(totals["correct_sum"]) / weight}
    if "next_sentence_weight_sum" in totals:  # sentence-pair batches: BERT's next-sentence prediction
        pairs = max(float(totals["next_sentence_weight_sum"]), 1.0)
        val["val_next_sentence_loss"] = float(totals["next_sentence_loss_sum"]) / pairs
        val["val_next_sentence_accuracy"] = float(totals["next_sentence_correct_sum"]) / pairs
    return val


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


def _tokenizer_path(config: ml_collections.ConfigDict, workdir: str) -> str | None:
    """The tokenizer file the run uses: the given one, or the one cached in the workdir."""
    if config.data.tokenizer.path:
        return config.data.tokenizer.path
    for name in ("tokenizer.model", "tokenizer.json"):
        path = os.path.join(workdir, "tokenizer", name)
        if os.path.exists(path):
            return path
    return None


def _check_same_model(meta: dict, config: ml_collections.ConfigDict, step: int) -> None:
    """Raises CheckpointError when the checkpoint holds the parameters of a different model."""
    saved = json.loads(meta["config"])
    defaults = config_lib.base_config()  # for checkpoints older than a field
    for field in _PARAMETER_FIELDS:
        section, name = field.split(".")
        was = saved.get(section, {}).get(name, defaults[section][name])
        if was != config[section][name]:
            raise CheckpointError(
                f"the checkpoint at step {step} was trained with {field}={was!r}, but this run asks for "
                f"{config[section][name]!r}, a model with other parameters; run with {field}={was!r} to "
                "resume, or use a new --workdir")


def _check_resumable(meta: dict, config: ml_collections.ConfigDict, data: Data, step: int) -> None:
    """Raises CheckpointError (DataError) when the checkpoint was made by a different model (data)."""
    _check_same_model(meta, config, step)
    data.train.restore(meta["data_state"])


def _load_data(config: ml_collections.ConfigDict, workdir: str) -> Data:
    """The data; process 0 builds (and caches) the tokenizer first, the others then read it."""
    if jax.process_count() == 1:
        return build_data(config, workdir)
    from jax.experimental import multihost_utils
    data = build_data(config, workdir) if _is_main() else None
    multihost_utils.sync_global_devices("jaxlm: tokenizer ready")
    return data if data is not None else build_data(config, workdir)


def run(config: ml_collections.ConfigDict, workdir: str, *, recipe: str | None = None) -> RunResult:
    """Trains (or resumes training) the model the config describes; everything goes to workdir.

    `recipe` is the file the config came from: the start summary lists the fields that differ from it
    (from jaxlm/config.py's defaults when None).
    """
    config_lib.validate(config)
    make_workdir(workdir)
    with WorkdirLock(workdir) if _is_main() else contextlib.nullcontext(), StopSignals() as stop:
        return _run(config, workdir, stop, recipe)


def _run(config: ml_collections.ConfigDict, workdir: str, stop: StopSignals, recipe: str | None) -> RunResult:
    data = _load_data(config, workdir)
    config_lib.check_vocab(config, data.tokenizer.vocab_size)
    model_cfg = model_config_from(config, data.tokenizer.vocab_size)
    trainer = make_trainer(config, model_cfg, make_mesh(config.mesh))
    mesh, abstract_params = trainer.mesh, trainer.abstract_params

    tokenizer_file = _tokenizer_path(config, workdir)
    tokenizer = tokenizer_record(tokenizer_file) if tokenizer_file else None
    checkpointer = Checkpointer(config.checkpoint.directory or os.path.join(workdir, "checkpoints"),
                                config.checkpoint)
    newest = checkpointer.newest_meta()
    if newest is not None:  # a clear message before Orbax finds the trees differ
        _check_same_model(newest[1], config, newest[0])
    restored = checkpointer.restore_newest(
        with_shardings(abstract_params, trainer.params_sharding),
        with_shardings(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state), report=_say)
    start_step, trained_seconds = 0, 0.0
    if restored is not None:
        _check_resumable(restored.meta, config, data, restored.step)
        counters = restored.meta["state"]
        state = jax.device_put(
            TrainState(step=np.int32(counters["step"]), params=restored.params,
                       opt_state=restored.opt_state, first_bad_step=np.int32(0),
                       skipped_steps=np.int32(counters["skipped_steps"])), trainer.state_sharding)
        start_step, trained_seconds = restored.step, restored.meta["train_seconds"]
        _say(f"resume | step {start_step} from {checkpointer.directory}/{start_step} (saved "
             f"{restored.meta['saved_at']}; {format_duration(trained_seconds)} of training kept)")
    elif config.checkpoint.restore_from:
        state = _start_from(config, trainer)
    else:
        state = trainer.init_state(config.seed)

    if _is_main():
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    mesh_text = " x ".join(f"{axis} {size}" for axis, size in mesh.shape.items())
    _say(f"jaxlm | {config.model.family} ({config_lib.objective(config)}) | "
         f"{_param_count(abstract_params) / 1e6:.2f}M parameters | {jax.device_count()} x "
         f"{jax.devices()[0].platform} in {jax.process_count()} process(es) | mesh {mesh_text} | "
         f"workdir {workdir}")
    _say(f"data  | {data.summary}")
    for line in start_lines(config, recipe, abstract_params, trainer.abstract_state, trainer.state_sharding,
                            trainer.params_sharding):
        _say(line)

    batch_sharding = trainer.batch_sharding
    global_rows, width = config.data.batch_size, config.data.seq_len
    process, processes = jax.process_index(), jax.process_count()
    rows = partition.host_rows(batch_sharding, global_rows, width)
    if rows != (global_rows * process // processes, global_rows * (process + 1) // processes):
        raise config_lib.ConfigError(
            f"config.mesh: this mesh gives host {process} rows {rows[0]}..{rows[1]} of each batch, not "
            "an equal contiguous share; put the tensor axis within hosts (a smaller mesh.tensor)")

    def device_batch(host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return partition.put_batch(host_batch, batch_sharding, global_rows)

    start = time.perf_counter()
    first = device_batch(data.train.host_batch(start_step, process, processes))
    train_step = trainer.compile_train_step(state, first)
    eval_step = trainer.eval_step
    _say(f"compiled train step in {time.perf_counter() - start:.1f} s")
    val_batches = [device_batch(host_rows(b, process, processes)) for b in data.val_batches]
    # This host's batches, built ahead in a background thread while the devices work.
    host_batches = data.train.iterate(start_step, process, processes, prefetch=config.data.prefetch)

    writer = MetricWriter(workdir, start_step, config.to_json_best_effort(indent=2))
    _say(f"logs  | {writer.path} and TensorBoard events in {writer.tensorboard_dir}")
    steps, tokens_per_step = config.train.steps, global_rows * width
    flops_per_step = flops_per_token(trainer.model_cfg, abstract_params, width) * tokens_per_step
    peak_per_device = peak_flops(jax.devices()[0])
    progress = Progress(steps, start_step, enabled=_is_main())
    last_step_now = config.train.stop_at or steps  # the last step this invocation runs
    pending: tuple[int, dict] | None = None  # the last logged step's metrics, still on the device
    last_time, last_step, loss = time.perf_counter(), start_step, float("nan")
    start_time = last_time
    val: dict[str, float] = {}
    last_saved = restored.step if restored is not None else None

    def diverged(step: int, value: float | None = None) -> TrainingError:
        good = f"the last good checkpoint is step {last_saved} in {checkpointer.directory}" \
            if last_saved is not None else "no checkpoint was saved"
        what = f"loss is {value}" if value is not None else "the loss or gradient is not finite"
        return TrainingError(
            f"{what} at step {step}: training diverged; {good} (nothing after it was written). Lower "
            f"train.learning_rate (now {config.train.learning_rate}), raise train.warmup_steps, set "
            "train.clip_norm, or set train.skip_nonfinite=True to skip such steps.")

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
        if not math.isfinite(metrics["loss"]) and not config.train.skip_nonfinite:
            raise diverged(step, metrics["loss"])
        record = {"step": step, "loss": metrics["loss"], "accuracy": metrics["accuracy"],
                  "perplexity": math.exp(min(metrics["loss"], 50.0)),
                  "grad_norm": metrics["grad_norm"], "learning_rate": metrics["learning_rate"],
                  "tokens_per_second": tokens_per_step / seconds_per_step}
        record.update({k: metrics[k] for k in ("next_sentence_loss", "next_sentence_accuracy") if k in metrics})
        utilisation = mfu(flops_per_step, seconds_per_step, peak_per_device, jax.device_count())
        if utilisation is not None:
            record["mfu"] = utilisation
        writer.write(record)
        progress.step(step, record, seconds_per_step)
        loss = record["loss"]

    def save(step: int) -> None:
        """Checks the state is finite, then starts writing it (the loop goes on while it writes)."""
        nonlocal last_saved
        first_bad, skipped = (int(x) for x in jax.device_get((state.first_bad_step, state.skipped_steps)))
        if first_bad and not config.train.skip_nonfinite:
            raise diverged(first_bad)
        meta = {"state": {"step": step, "skipped_steps": skipped}, "saved_at": now_iso(),
                "train_seconds": trained_seconds + time.perf_counter() - start_time,
                "config": config.to_json_best_effort(), "data_state": data.train.state(step),
                "tokenizer": tokenizer, "mesh": dict(mesh.shape)}
        start = time.perf_counter()
        try:
            checkpointer.save(step, state.params, state.opt_state, meta)
        except CheckpointError as error:
            raise TrainingError(str(error)) from error
        last_saved = step
        progress.write(f"save  | step {step} -> {checkpointer.directory}/{step} "
                       f"(loop waited {time.perf_counter() - start:.2f} s)")

    try:
        for step in range(start_step + 1, last_step_now + 1):
            state, metrics = train_step(state, device_batch(next(host_batches)))
            report_pending()  # the previous log point's metrics: ready, since this step is queued
            if step % config.log.every == 0 or step == last_step_now:
                pending = (step, metrics)
            if val_batches and ((config.eval.every and step % config.eval.every == 0)
                                or step == last_step_now):
                report_pending()
                val = evaluate(eval_step, state.params, val_batches)
                writer.write({"step": step, **val})
                writer.flush()
                progress.write(eval_line(step, steps, val))
                last_time = time.perf_counter()  # evaluation time is not training time
            stopping = stop.requested(step)
            if (stopping or step == last_step_now
                    or (config.checkpoint.every and step % config.checkpoint.every == 0)):
                report_pending()
                save(step)
            if stopping and step < steps:
                _wait_for_saves(checkpointer)
                raise Preempted(f"stopped by a signal at step {step}/{steps} after saving a "
                                f"checkpoint; run the same command to continue")
        report_pending()
        _wait_for_saves(checkpointer)
    finally:
        progress.close()
        writer.close()
        host_batches.close()
        checkpointer.close()
    elapsed = time.perf_counter() - start_time
    steps_run = max(last_step_now - start_step, 1)

    text = ""
    if jax.process_count() == 1:  # sampling reads every parameter on one host
        text = _demo(config, generate.inference_graphdef(model_cfg), state.params, data, model_cfg.max_len)
        _say("sample |\n" + text)
    _say(f"done  | {steps_run} steps in {format_duration(elapsed)} "
         f"({elapsed / steps_run * 1e3:.1f} ms/step)")
    return RunResult(final_loss=loss, val_loss=val.get("val_loss"),
                     val_accuracy=val.get("val_accuracy"), sample=text,
                     steps_per_second=steps_run / elapsed, start_step=start_step)


def _wait_for_saves(checkpointer: Checkpointer) -> None:
    try:
        checkpointer.wait()
    except CheckpointError as error:
        raise TrainingError(str(error)) from error


def _start_from(config: ml_collections.ConfigDict, trainer: Trainer) -> TrainState:
    """A fresh run whose parameters (and, unless params_only, optimizer and step) come from elsewhere."""
    source = config.checkpoint.restore_from
    other = Checkpointer(checkpoint_dir(source), config.checkpoint, read_only=True)
    try:
        steps = other.complete_steps()
        if not steps:
            raise CheckpointError(f"checkpoint.restore_from={source!r}: no complete checkpoint there")
        with reading_step(other.directory, steps[0], steps, restore_from=True):
            saved = dict(jax.tree_util.tree_leaves_with_path(other.saved_params_shapes(steps[0])))
        for path, wanted in jax.tree_util.tree_leaves_with_path(trainer.abstract_params):
            if path not in saved or saved[path].shape != wanted.shape:
                found = saved[path].shape if path in saved else "nothing"
                raise CheckpointError(f"checkpoint.restore_from={source!r}: parameter "
                                      f"{jax.tree_util.keystr(path)} is {found} there but {wanted.shape} "
                                      "in this run's model; the model fields must match")
        with reading_step(other.directory, steps[0], steps, restore_from=True):
            restored = other.restore(
                steps[0], with_shardings(trainer.abstract_params, trainer.params_sharding),
                None if config.checkpoint.params_only
                else with_shardings(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state))
    finally:
        other.close()
    _say(f"start | weights from {other.directory} step {restored.step}"
         + ("" if config.checkpoint.params_only else " (optimizer state and step too)"))
    state = trainer.state_from_params(restored.params)
    if config.checkpoint.params_only:
        return state
    return state.replace(opt_state=restored.opt_state,
                         step=jax.device_put(np.int32(restored.step), trainer.state_sharding.step))
