"""The training loop: data, mesh, model and optimizer from a config; resume; train; evaluate; save; sample.

`run(config, workdir)` is what `run_pretrain.py` calls. The loop never waits on the device between log
points: it dispatches step k and only then reads the metrics of the last logged step. It saves a
checkpoint every `checkpoint.every` steps, at the end, and when SIGTERM/SIGINT asks it to stop, and starts
again from the newest good checkpoint when the same command runs on the same workdir.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import time

import jax
import ml_collections
import numpy as np

from jaxlm import config as config_lib
from jaxlm.data.caches import TOKENIZER_DIR
from jaxlm.data.errors import DataError
from jaxlm.data.pipeline import Data, build_data
from jaxlm.data.select import train_source
from jaxlm.data.tokenizer import Tokenizer
from jaxlm.data.tokenizer_cache import build_tokenizer, tokenizer_from_bytes
from jaxlm.finetune.classification_data import build_classification_data, training_labels
from jaxlm.generate.decode import inference_graphdef, sample
from jaxlm.generate.fill_mask import demo_lines
from jaxlm.model.config import ModelConfig
from jaxlm.model.flops import train_step_flops
from jaxlm.parallel.mesh import make_mesh
from jaxlm.runs import layout
from jaxlm.runs.checkpoint import Checkpointer, CheckpointError, now_iso
from jaxlm.runs.layout import find_checkpoints
from jaxlm.runs.lock import WorkdirLock, make_workdir
from jaxlm.runs.meta import CheckpointMeta, TokenizerRecord
from jaxlm.train import partition
from jaxlm.train.ema import ema_params
from jaxlm.train.errors import Preempted, TrainingError
from jaxlm.train.evaluate import evaluate
from jaxlm.train.goodput import Clock
from jaxlm.train.mfu import mfu, peak_flops
from jaxlm.train.profiling import Profiler
from jaxlm.train.progress import Progress, eval_line, format_duration
from jaxlm.train.resume import Start, start_state
from jaxlm.train.signals import StopSignals
from jaxlm.train.spikes import SpikeDetector
from jaxlm.train.summary import param_count, start_lines
from jaxlm.train.trainer import Trainer, make_trainer
from jaxlm.train.wandb_sink import WandbSettings, require_wandb
from jaxlm.train.writers import MetricWriter


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


def run(
    config: ml_collections.ConfigDict, workdir: str, *, reference: tuple[str, ml_collections.ConfigDict] | None = None
) -> RunResult:
    """Trains (or resumes training) the model the config describes; everything goes to workdir.

    `reference` is (name, config) of the recipe the config came from, before overrides: the start summary
    lists the fields that differ from it (from jaxlm/config.py's defaults when None).
    """
    config_lib.validate(config)
    require_wandb(config.log)
    make_workdir(workdir)
    with WorkdirLock(workdir) if _is_main() else contextlib.nullcontext(), StopSignals() as stop:
        return _run(config, workdir, stop, reference)


def _run(
    config: ml_collections.ConfigDict,
    workdir: str,
    stop: StopSignals,
    reference: tuple[str, ml_collections.ConfigDict] | None,
) -> RunResult:
    clock = Clock()  # the run's wall time by category, reported when the loop ends
    c = config.checkpoint
    checkpointer = Checkpointer(
        layout.checkpoints_dir(workdir, c.directory), keep=c.keep, keep_every=c.keep_every, async_save=c.async_save
    )
    try:
        newest = checkpointer.newest_meta()
        if newest is not None and newest.step >= (config.train.stop_at or config.train.steps):
            _say(_nothing_to_do(config, newest.step, workdir))
            return RunResult(float("nan"), None, None, "", 0.0, newest.step)
        if config.finetune.task:
            _take_the_pretrained_model(config, newest)
        data = _load_data(config, workdir, newest)
        config_lib.check_vocab(config, data.tokenizer.vocab_size)
        trainer = make_trainer(
            config, config_lib.model_config(config, data.tokenizer.vocab_size), make_mesh(config.mesh)
        )
        start = start_state(config, trainer, checkpointer, newest, data, _say)
        if _is_main():
            with open(os.path.join(workdir, layout.CONFIG_FILE), "w") as f:
                f.write(config.to_json_best_effort(indent=2))
        _print_start(config, trainer, data, workdir, reference)
        loop = _Loop(config, trainer, data, checkpointer, start, workdir, stop, clock)
        loop.train()
    finally:
        checkpointer.close()
    text = ""
    if jax.process_count() == 1 and not config.finetune.task:  # sampling reads every parameter on one host
        text = _demo(config, trainer.model_cfg, loop.state.params, data.tokenizer)
        _say("sample |\n" + text)
    elapsed = time.perf_counter() - loop.start_time
    steps_run = max(loop.last_step_now - start.step, 1)
    _say(f"done  | {steps_run} steps in {format_duration(elapsed)} ({elapsed / steps_run * 1e3:.1f} ms/step)")
    return RunResult(
        final_loss=loop.loss,
        val_loss=loop.val.get("val_loss"),
        val_accuracy=loop.val.get("val_accuracy"),
        sample=text,
        steps_per_second=steps_run / elapsed,
        start_step=start.step,
    )


def _nothing_to_do(config: ml_collections.ConfigDict, step: int, workdir: str) -> str:
    """The line for a run whose newest checkpoint is already at (or past) the step it would stop at."""
    if step >= config.train.steps:
        return (
            f"done  | already finished: {workdir} has step {step} of train.steps={config.train.steps}; nothing to "
            "do (raise train.steps to train further, or give another --workdir for a new run)"
        )
    return (
        f"done  | train.stop_at={config.train.stop_at}, and {workdir} is already at step {step}; nothing to do "
        f"(raise train.stop_at, or leave it out to continue to step {config.train.steps})"
    )


def _load_data(config: ml_collections.ConfigDict, workdir: str, newest: CheckpointMeta | None) -> Data:
    """The data. Resuming, the tokenizer is the one the checkpoint carries (unless the config names one), so
    a workdir that lost its tokenizer folder continues with the same ids; a new run from
    `checkpoint.restore_from` takes that checkpoint's tokenizer the same way, and refuses a named one that
    differs from it. Process 0 builds (and caches) the tokenizer first; the other processes then read it."""
    tokenizer = None
    carried, whose = newest, f"the checkpoint of step {newest.step}" if newest is not None else ""
    source_field, source = _source_run(config)
    if newest is None and source:
        carried = _restore_from_meta(source)
        whose = f"{source_field}'s step {carried.step}" if carried is not None else ""
    if carried is not None and carried.tokenizer is not None and not config.data.tokenizer.path:
        tokenizer = tokenizer_from_bytes(carried.tokenizer.file, carried.tokenizer.content, f"the tokenizer of {whose}")
        if carried is not newest:
            _say(f"tokenizer | the one {whose} was trained with ({carried.tokenizer.file})")

    def build() -> Data:
        if config.finetune.task:
            return _classification_data(config, workdir, tokenizer)
        return build_data(
            config.data, **config_lib.data_arguments(config), tokenizer=tokenizer, cache_dir=layout.data_cache(workdir)
        )

    if jax.process_count() == 1:
        data = build()
    else:
        from jax.experimental import multihost_utils

        data = build() if _is_main() else None
        multihost_utils.sync_global_devices("jaxlm: tokenizer ready")
        data = data if data is not None else build()
    if newest is None and carried is not None and carried.tokenizer is not None:
        ours = TokenizerRecord.of(data.tokenizer)
        if ours.sha256 != carried.tokenizer.sha256:
            raise CheckpointError(
                f"{source_field}={source!r}: its step {carried.step} was trained "
                f"with another tokenizer than data.tokenizer.path={config.data.tokenizer.path!r} (sha256 "
                f"{carried.tokenizer.sha256[:12]} there, {ours.sha256[:12]} here), so the same ids would mean other "
                "text; leave data.tokenizer.path out to use the checkpoint's own"
            )
    return data


def _source_run(config: ml_collections.ConfigDict) -> tuple[str, str]:
    """(field, path) of the other run a new run starts from (its weights and tokenizer), or ("", "")."""
    for field in ("checkpoint.restore_from", "finetune.init_from"):
        section, name = field.split(".")
        if config[section][name]:
            return field, config[section][name]
    return "", ""


def _take_the_pretrained_model(config: ml_collections.ConfigDict, newest: CheckpointMeta | None) -> None:
    """A classifier's model section is its pretrained encoder's (from finetune.init_from; resuming, from its own
    checkpoint, which recorded it), and its labels the training data's when finetune.labels is empty; both are
    written into `config`, so config.json and the checkpoints say what was trained. The config is checked again
    with them (data.seq_len against the encoder's positions, say)."""
    if config.finetune.init_from:
        if newest is not None:
            source, where = config_lib.config_from_json(newest.config_json), f"this run's step {newest.step}"
        else:
            meta = _restore_from_meta(config.finetune.init_from)
            if meta is None:
                raise CheckpointError(
                    f"finetune.init_from={config.finetune.init_from!r}: no readable checkpoint there; give the "
                    "--workdir of a jaxlm pretraining run (or an import made with python -m jaxlm.export --from_hf)"
                )
            source, where = config_lib.config_from_json(meta.config_json), f"step {meta.step}"
            if source.finetune.task:
                raise CheckpointError(
                    f"finetune.init_from={config.finetune.init_from!r}: step {meta.step} is already a classifier; "
                    "start from the pretraining run it came from"
                )
            if source.model.max_len == -1:  # the positions it learned: its seq_len's
                source.model.max_len = source.data.seq_len
        for field in config_lib.PARAMETER_FIELDS:
            section, name = field.split(".")
            if section == "model":
                config.model[name] = source.model[name]
        config.data.tokenizer.kind = source.data.tokenizer.kind  # the ids come with the encoder
        _say(
            f"init  | the {source.model.family} encoder of {config.finetune.init_from} ({where}: "
            f"{source.model.num_layers} layers, width {source.model.width}); its model section replaces this config's"
        )
    if not config.finetune.labels:
        found = training_labels(config.data)
        if len(found) < 2:  # named here: finetune.labels was not set by the user
            raise DataError(
                f"config.data.path={config.data.path!r}: {len(found)} label(s) ({', '.join(found)}); a classifier "
                "needs two or more"
            )
        config.finetune.labels = ",".join(found)
    config_lib.validate(config)


def _classification_data(config: ml_collections.ConfigDict, workdir: str, tokenizer: Tokenizer | None) -> Data:
    """A classifier's labelled texts, with the pretrained run's tokenizer (or one trained on the texts)."""
    if tokenizer is None:
        tokenizer = build_tokenizer(
            config.data.tokenizer,
            train_source(config.data),
            max_documents=config.data.max_documents,
            cache_dir=os.path.join(cache, TOKENIZER_DIR) if (cache := layout.data_cache(workdir)) else None,
        )
    return build_classification_data(
        config.data,
        labels=config_lib.labels(config),
        tokenizer=tokenizer,
        bert=config.model.family == "bert",
        seed=config.seed,
        max_val_batches=config.eval.max_batches,
    )


def _restore_from_meta(source: str) -> CheckpointMeta | None:
    """The metadata of checkpoint.restore_from's newest complete step; None where there is none to read (the
    restore itself then says why)."""
    other = Checkpointer(find_checkpoints(source), read_only=True)
    try:
        steps = other.complete_steps()
        return other.meta(steps[0]) if steps else None
    except Exception:  # unreadable metadata: the restore names the step and the older ones
        return None
    finally:
        other.close()


def _print_start(
    config: ml_collections.ConfigDict,
    trainer: Trainer,
    data: Data,
    workdir: str,
    reference: tuple[str, ml_collections.ConfigDict] | None,
) -> None:
    mesh_text = " x ".join(f"{axis} {size}" for axis, size in trainer.mesh.shape.items())
    _say(
        f"jaxlm | {config.model.family} ({config_lib.objective(config)}) | "
        f"{param_count(trainer.abstract_params) / 1e6:.2f}M parameters | {jax.device_count()} x "
        f"{jax.devices()[0].platform} in {jax.process_count()} process(es) | mesh {mesh_text} | "
        f"attention {trainer.model_cfg.attention} | workdir {workdir}"
    )
    _say(f"data  | {data.summary}")
    for line in start_lines(
        config,
        reference,
        trainer.abstract_params,
        trainer.abstract_state,
        trainer.state_sharding,
        trainer.params_sharding,
    ):
        _say(line)


def _demo(config: ml_collections.ConfigDict, model_cfg: ModelConfig, params: dict, tokenizer: Tokenizer) -> str:
    """A short continuation of the prompt (causal) or a fill-mask demonstration (MLM)."""
    graphdef = inference_graphdef(model_cfg)
    if config_lib.objective(config) == "causal":
        new_ids = sample(
            graphdef,
            params,
            tokenizer.encode(config.sample.prompt),
            num_tokens=config.sample.num_tokens,
            max_len=model_cfg.max_len,
            temperature=config.sample.temperature,
            seed=config.seed,
            eos_id=tokenizer.eos_id,
        )
        return config.sample.prompt + tokenizer.decode(new_ids)
    return "\n".join(demo_lines(graphdef, params, tokenizer, config.sample.prompt, model_cfg.max_len))


RUN_AHEAD = 2  # steps dispatched but not finished, at most


class _Loop:
    """The steps of one invocation: dispatch, log, evaluate, save, stop on a signal."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        trainer: Trainer,
        data: Data,
        checkpointer: Checkpointer,
        start: Start,
        workdir: str,
        stop: StopSignals,
        clock: Clock,
    ):
        self.config, self.trainer, self.data, self.checkpointer, self.stop = config, trainer, data, checkpointer, stop
        self.clock = clock
        self.state, self.first_step, self.train_seconds = start.state, start.step, start.train_seconds
        self.last_saved = start.checkpoint  # the newest checkpoint written or restored
        self.wandb_run_id = start.wandb_run_id  # saved with every checkpoint, even while W&B is off
        self.spikes = SpikeDetector(config.log.spike_sd)  # starts afresh on resume: ten log points to learn
        self.steps = config.train.steps
        self.last_step_now = config.train.stop_at or self.steps  # the last step this invocation runs
        self.global_rows, self.seq_len = config.data.batch_size, config.data.seq_len
        self.process, self.processes = jax.process_index(), jax.process_count()
        self._check_host_rows()
        self.tokenizer = TokenizerRecord.of(data.tokenizer)
        self.mesh_shape = dict(trainer.mesh.shape)
        self.flops_per_step = train_step_flops(trainer.model_cfg, self.global_rows, self.seq_len).total
        self.peak_per_device = peak_flops(jax.devices()[0])
        self.pending: tuple[int, dict] | None = None  # the last logged step's metrics, still on the device
        self.loss, self.val = float("nan"), {}
        self.workdir = workdir

    def _check_host_rows(self) -> None:
        rows = partition.host_row_range(self.trainer.batch_shardings["inputs"], self.global_rows, self.seq_len)
        expected = (
            self.global_rows * self.process // self.processes,
            self.global_rows * (self.process + 1) // self.processes,
        )
        if rows != expected:
            raise config_lib.ConfigError(
                f"config.mesh: this mesh gives host {self.process} rows {rows[0]}..{rows[1]} of each batch, not an "
                "equal contiguous share; put the tensor axis within hosts (a smaller mesh.tensor)"
            )

    def _device_batch(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return partition.put_batch(host_batch, self.trainer.batch_shardings, self.global_rows)

    def train(self) -> None:
        """Runs steps first_step + 1 .. last_step_now; raises Preempted when a signal stopped it early."""
        clock = self.clock
        clock.charge("startup")
        compile_start = time.perf_counter()
        first = self._device_batch(self.data.train.host_batch(self.first_step, self.process, self.processes))
        train_step = self.trainer.compile_train_step(self.state, first)
        _say(f"compiled train step in {time.perf_counter() - compile_start:.1f} s")
        clock.charge("compile")
        val_batches = [self._device_batch(b) for b in self.data.host_val_batches(self.process, self.processes)]
        self.writer = MetricWriter(
            self.workdir,
            self.first_step,
            self.config.to_json_best_effort(indent=2),
            wandb=WandbSettings.of(self.config.log, self.wandb_run_id),
        )
        self.wandb_run_id = self.writer.wandb_run_id or self.wandb_run_id  # process 0's: it writes the checkpoints
        wandb_run = f"; W&B run {self.wandb_run_id}" if self.config.log.wandb_project else ""
        _say(f"logs  | {self.writer.path} and TensorBoard events in {self.writer.tensorboard_dir}{wandb_run}")
        clock.charge("eval")
        # This host's batches, built ahead in a background thread while the devices work.
        batches = self.data.train.iterate(
            self.first_step, self.process, self.processes, prefetch=self.config.data.prefetch
        )
        self.progress = Progress(self.steps, self.first_step, enabled=_is_main())
        profiler = self._profiler()
        self.start_time = self.last_time = time.perf_counter()
        self.last_logged = self.first_step
        every = self.config  # every.log.every, every.eval.every, every.checkpoint.every
        # The host may run ahead of the devices by RUN_AHEAD steps, no more: enough to keep them busy, and a
        # stop signal is then acted on within a few steps, not after every step queued since the last log.
        in_flight: collections.deque[jax.Array] = collections.deque()
        clock.charge("other")
        try:
            for step in range(self.first_step + 1, self.last_step_now + 1):
                profiler.before_step(step, clock)
                batch = self._device_batch(next(batches))
                clock.charge("data")
                with profiler.annotate(step):
                    self.state, metrics = train_step(self.state, batch)
                in_flight.append(metrics["loss"])
                if len(in_flight) > RUN_AHEAD:
                    in_flight.popleft().block_until_ready()
                self._report_pending()  # the previous log point's metrics: ready, since this step is queued
                if step % every.log.every == 0 or step == self.last_step_now:
                    self.pending = (step, metrics)
                profiler.after_step(step, self.state, clock)
                clock.charge("steps")
                if val_batches and ((every.eval.every and step % every.eval.every == 0) or step == self.last_step_now):
                    self._finish_steps()
                    self._evaluate(step, val_batches)
                    clock.charge("eval")
                stopping = self.stop.requested(step)
                if (
                    stopping
                    or step == self.last_step_now
                    or (every.checkpoint.every and step % every.checkpoint.every == 0)
                ):
                    self._report_pending()
                    self._finish_steps()
                    self._save(step)
                    clock.charge("checkpoints")
                if stopping and step < self.steps:
                    self._wait_for_saves()
                    self._report_time(step)
                    raise Preempted(
                        f"stopped by a signal at step {step}/{self.steps} after saving a checkpoint; "
                        "run the same command to continue"
                    )
            self._report_pending()
            self._wait_for_saves()
            self._report_time(self.last_step_now)
        finally:
            profiler.close()
            self.progress.close()
            self.writer.close()
            batches.close()

    def _profiler(self) -> Profiler:
        """The trace of log.profile_steps: process 0's, or every process's with log.profile_all_processes."""
        log = self.config.log
        return Profiler(
            config_lib.profile_range(log.profile_steps),
            os.path.join(self.workdir, layout.PROFILE_DIR),
            first_step=self.first_step,
            last_step=self.last_step_now,
            traced=_is_main() or log.profile_all_processes,
            session_suffix=f"_process{self.process}" if log.profile_all_processes and self.processes > 1 else "",
            say=self.progress.write,
        )

    def _finish_steps(self) -> None:
        """Waits for the steps in flight, which an evaluation or a save would wait for anyway, so their device
        time counts as steps, not as evaluation or checkpointing."""
        jax.block_until_ready(self.state)
        self.clock.charge("steps")

    def _report_time(self, step: int) -> None:
        """The `time |` line and metrics record: where the wall time went, and the share spent in train steps."""
        self.clock.charge("checkpoints")  # waiting for the last asynchronous saves
        self.writer.write(self.clock.record(step))
        self.progress.write(self.clock.line())

    def _evaluate(self, step: int, val_batches: list[dict[str, jax.Array]]) -> None:
        self._report_pending()
        self.val = evaluate(self.trainer.eval_step, self.state.params, val_batches)
        average = ema_params(self.state.opt_state)
        if average is not None:  # the average beside the raw parameters: val_loss_ema, val_accuracy_ema, ...
            self.val.update({f"{k}_ema": v for k, v in evaluate(self.trainer.eval_step, average, val_batches).items()})
        self.writer.write({"step": step, **self.val})
        self.writer.flush()
        self.progress.write(eval_line(step, self.steps, self.val))
        self.last_time = time.perf_counter()  # evaluation time is not training time

    def _report_pending(self) -> None:
        """Prints and records the last logged step's metrics, if any are waiting on the device."""
        if self.pending is None:
            return
        step, metrics = self.pending
        self.pending = None
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        seconds_per_step = (now - self.last_time) / max(step - self.last_logged, 1)
        self.last_time, self.last_logged = now, step
        if not math.isfinite(metrics["loss"]) and not self.config.train.skip_nonfinite:
            raise self._diverged(step, metrics["loss"])
        tokens_per_step = self.global_rows * self.seq_len
        record = {
            "step": step,
            "loss": metrics["loss"],
            "accuracy": metrics["accuracy"],
            "perplexity": math.exp(min(metrics["loss"], 50.0)),
            "grad_norm": metrics["grad_norm"],
            "learning_rate": metrics["learning_rate"],
            "tokens_per_second": tokens_per_step / seconds_per_step,
        }
        record.update(
            {
                k: metrics[k]
                for k in ("next_sentence_loss", "next_sentence_accuracy", "z_squared", "loss_scale", "overflow_steps")
                if k in metrics
            }
        )
        utilisation = mfu(self.flops_per_step, seconds_per_step, self.peak_per_device, jax.device_count())
        if utilisation is not None:
            record["mfu"] = utilisation
        sigmas = self.spikes.check(record["loss"])
        if sigmas is not None:
            record["loss_spike_sd"] = sigmas
        self.writer.write(record)
        self.progress.step(step, record, seconds_per_step)
        if sigmas is not None:
            self.progress.write(
                f"spike | step {step}: loss {record['loss']:.4f} is {sigmas:.1f} standard deviations above the "
                f"running mean {self.spikes.mean:.4f} (log.spike_sd={self.config.log.spike_sd})"
            )
        self.loss = record["loss"]

    def _diverged(self, step: int, value: float | None = None) -> TrainingError:
        good = (
            f"the last good checkpoint is step {self.last_saved} in {self.checkpointer.directory}"
            if self.last_saved is not None
            else "no checkpoint was saved"
        )
        what = (
            f"loss is {value}"
            if value is not None
            else "the loss, the gradient or the updated parameters are not finite"
        )
        return TrainingError(
            f"{what} at step {step}: training diverged; {good} (nothing after it was written). Lower "
            f"train.learning_rate (now {self.config.train.learning_rate}), raise train.warmup_steps, set "
            "train.clip_norm, or set train.skip_nonfinite=True to skip such steps."
        )

    def _save(self, step: int) -> None:
        """Checks the state is finite, then starts writing it (the loop goes on while it writes)."""
        first_bad, skipped = (int(x) for x in jax.device_get((self.state.first_bad_step, self.state.skipped_steps)))
        if first_bad and not self.config.train.skip_nonfinite:
            raise self._diverged(first_bad)
        meta = CheckpointMeta(
            step=step,
            config_json=self.config.to_json_best_effort(),
            saved_at=now_iso(),
            train_seconds=self.train_seconds + time.perf_counter() - self.start_time,
            skipped_steps=skipped,
            data_state=self.data.train.state(step),
            tokenizer=self.tokenizer,
            mesh=self.mesh_shape,
            wandb_run_id=self.wandb_run_id,
        )
        start = time.perf_counter()
        try:
            self.checkpointer.save(step, self.state.params, self.state.opt_state, meta)
        except CheckpointError as error:
            raise TrainingError(str(error)) from error
        self.last_saved = step
        self.progress.write(
            f"save  | step {step} -> {self.checkpointer.directory}/{step} "
            f"(loop waited {time.perf_counter() - start:.2f} s)"
        )

    def _wait_for_saves(self) -> None:
        try:
            self.checkpointer.wait()
        except CheckpointError as error:
            raise TrainingError(str(error)) from error
