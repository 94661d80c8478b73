"""Every documented failure, produced for real against a tiny run, one line per case.

    python tools/fault_sweep.py                 # all cases
    python tools/fault_sweep.py full_disk sigint_twice

Each case trains a tiny model (char tokenizer, 2 layers of width 32) in a scratch directory, makes the fault
happen for real (a full tmpfs, a read-only directory under `setpriv`, a truncated file, a held lock, SIGTERM
and SIGINT at chosen moments, a diverging learning rate) and prints

    case | exit code (expected) | first line of stderr | checkpoints intact | resumed | verdict

"intact": every checkpoint that existed before the fault has the same bytes after it (checkpoints the run
moved aside as unreadable are compared where they went). "resumed": the same command without the fault
continues from the newest good step. A case that needs root (tmpfs, setpriv) and cannot have it says
"skipped" and why. Exit status: 0 when every case that ran is clean, 1 otherwise. `tests/train/
test_faults.py` runs each case as a test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # this process reads checkpoints with JAX; the runs train on the CPU
TINY = [
    "--config.model.num_layers=2",
    "--config.model.width=32",
    "--config.model.num_heads=4",
    "--config.data.seq_len=32",
    "--config.data.batch_size=8",
    "--config.data.tokenizer.kind=char",
    "--config.train.warmup_steps=2",
    "--config.log.every=1",
    "--config.eval.every=0",
    "--config.eval.max_batches=1",
    "--config.sample.num_tokens=4",
    "--config.checkpoint.every=4",
]
EXIT_WITHIN = 30.0  # seconds from the stop line to the end of the process
HARD_LIMIT = 300.0  # a run still alive after this is reported as hung and killed
SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


@dataclasses.dataclass
class Run:
    """One finished (or killed) run_pretrain.py process."""

    code: int | None  # None: still running at HARD_LIMIT, killed
    stdout: str
    stderr: str
    seconds_after_stop_line: float | None  # from the first stderr line to the exit

    @property
    def first_error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[0] if lines else ""

    def resumed_from(self) -> int | None:
        for line in self.stdout.splitlines():
            if line.startswith("resume | step "):
                return int(line.split()[3])
        return None


@dataclasses.dataclass
class Outcome:
    case: str
    expected_code: int
    run: Run | None = None
    intact: bool | None = None
    resumed: bool | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    skipped: str = ""

    @property
    def clean(self) -> bool:
        return not self.skipped and not self.problems and self.intact is not False and self.resumed is not False

    def line(self) -> str:
        if self.skipped:
            return f"{self.case} | skipped: {self.skipped}"
        code = "hung" if self.run is None or self.run.code is None else self.run.code
        first = self.run.first_error_line[:110] if self.run else ""
        yes_no = {True: "yes", False: "NO", None: "-"}
        verdict = "clean" if self.clean else "FAILED: " + "; ".join(self.problems)
        return (
            f"{self.case} | exit {code} ({self.expected_code}) | {first or '(nothing on stderr)'} | "
            f"intact {yes_no[self.intact]} | resumed {yes_no[self.resumed]} | {verdict}"
        )


def env() -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count=1 {os.environ.get('JAXLM_TEST_XLA_FLAGS', '')}",
    }


def command(workdir: str, *flags: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, os.path.join(ROOT, "run_pretrain.py"), *TINY, *flags, f"--workdir={workdir}"]


def run(
    workdir: str,
    *flags: str,
    prefix: tuple[str, ...] = (),
    on_stdout: Callable[[str, subprocess.Popen], None] | None = None,
) -> Run:
    """Runs run_pretrain.py to its end (or HARD_LIMIT); `on_stdout(line, process)` sees each stdout line."""
    process = subprocess.Popen(
        command(workdir, *flags, prefix=prefix), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    out: list[str] = []
    err: list[str] = []
    first_err_at: list[float] = []

    def read_stdout():
        for line in process.stdout:
            out.append(line)
            if on_stdout is not None:
                on_stdout(line, process)

    def read_stderr():
        for line in process.stderr:
            if not first_err_at:
                first_err_at.append(time.monotonic())
            err.append(line)

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    try:
        code = process.wait(timeout=HARD_LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = None
    ended = time.monotonic()
    for reader in readers:
        reader.join()
    after = ended - first_err_at[0] if first_err_at else None
    return Run(code, "".join(out), "".join(err), after)


def checkpoint_hashes(workdir: str) -> dict[str, str]:
    """sha256 of every file of every checkpoint step, keyed by 'step/relative path'."""
    hashes = {}
    for directory in (os.path.join(workdir, "checkpoints"), os.path.join(workdir, "bad_checkpoints")):
        for path in glob.glob(os.path.join(directory, "**", "*"), recursive=True):
            if os.path.isfile(path) and ".orbax-checkpoint-tmp" not in path:  # an unfinished save is not one
                with open(path, "rb") as f:
                    key = os.path.relpath(path, os.path.dirname(directory))
                    hashes[key] = hashlib.sha256(f.read()).hexdigest()
    return hashes


def steps(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if os.path.isdir(directory) else []


def _intact(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file of `before` has the same bytes in `after`, where it was or moved into bad_checkpoints/ (as
    `bad_checkpoints/<step>.<suffix>/...`)."""
    moved = {(key.split("/", 2)[2], digest) for key, digest in after.items() if key.startswith("bad_checkpoints/")}
    return all(after.get(key) == digest or (key.split("/", 2)[2], digest) in moved for key, digest in before.items())


def _check_stop(outcome: Outcome) -> None:
    """The common expectations of a handled failure: the expected exit, promptly, one clear line, no traceback."""
    result = outcome.run
    if result.code is None:
        outcome.problems.append(f"still running after {HARD_LIMIT:.0f} s")
        return
    if result.code != outcome.expected_code:
        outcome.problems.append(f"exit {result.code}, not {outcome.expected_code}: {result.stderr[-300:]!r}")
    if "Traceback" in result.stderr:
        outcome.problems.append(f"a traceback on stderr ({len(result.stderr.splitlines())} lines)")
    if result.seconds_after_stop_line is not None and result.seconds_after_stop_line > EXIT_WITHIN:
        outcome.problems.append(f"exited {result.seconds_after_stop_line:.0f} s after its stop line")


def _resume(outcome: Outcome, workdir: str, newest_good: int, *flags: str) -> None:
    """The same command without the fault goes on from `newest_good` and finishes."""
    again = run(workdir, *flags)
    outcome.resumed = again.code == 0 and again.resumed_from() == newest_good
    if not outcome.resumed:
        outcome.problems.append(
            f"the next run resumed from {again.resumed_from()} (expected {newest_good}), exit {again.code}: "
            f"{again.stderr[-300:]!r}"
        )


class Sweep:
    """The cases. Each starts from a copy of one base run: 8 steps, checkpoints 4 and 8."""

    def __init__(self, scratch: str):
        self.scratch = scratch
        self._base: str | None = None

    def base(self) -> str:
        if self._base is None:
            self._base = os.path.join(self.scratch, "base")
            result = run(self._base, "--config.train.steps=8")
            if result.code != 0 or steps(self._base) != [4, 8]:
                raise RuntimeError(f"the base run failed (exit {result.code}):\n{result.stderr[-2000:]}")
        return self._base

    def workdir(self, case: str, from_base: bool = True) -> str:
        workdir = os.path.join(self.scratch, case)
        if from_base:
            shutil.copytree(self.base(), workdir)
        return workdir

    # Checkpoints that do not read.

    def truncated_newest(self) -> Outcome:
        outcome = Outcome("truncated_newest", 0)
        workdir = self.workdir(outcome.case)
        _truncate_params(workdir, 8)
        before = checkpoint_hashes(workdir)
        outcome.run = run(workdir, "--config.train.steps=12")
        _check_stop(outcome)
        if "checkpoint 8 cannot be restored" not in outcome.run.stdout:
            outcome.problems.append("the truncated checkpoint 8 was not reported")
        outcome.intact = _intact(before, checkpoint_hashes(workdir))
        outcome.resumed = outcome.run.resumed_from() == 4
        if not outcome.resumed:
            outcome.problems.append(f"resumed from {outcome.run.resumed_from()}, not 4")
        return outcome

    def no_commit_marker(self) -> Outcome:
        outcome = Outcome("no_commit_marker", 0)
        workdir = self.workdir(outcome.case)
        os.remove(os.path.join(workdir, "checkpoints", "8", "commit_success.txt"))
        before = checkpoint_hashes(workdir)
        outcome.run = run(workdir, "--config.train.steps=12")
        _check_stop(outcome)
        older = {k: v for k, v in before.items() if not k.startswith("checkpoints/8/")}  # 8: the unfinished save
        outcome.intact = _intact(older, checkpoint_hashes(workdir))
        outcome.resumed = outcome.run.resumed_from() == 4
        if not outcome.resumed:
            outcome.problems.append(f"resumed from {outcome.run.resumed_from()}, not 4")
        return outcome

    def restore_from_unreadable(self) -> Outcome:
        outcome = Outcome("restore_from_unreadable", 2)
        source = self.workdir(outcome.case)
        _truncate_params(source, 8)
        before = checkpoint_hashes(source)
        target = os.path.join(self.scratch, outcome.case + "-new")
        outcome.run = run(target, "--config.train.steps=4", f"--config.checkpoint.restore_from={source}")
        _check_stop(outcome)
        outcome.intact = _intact(before, checkpoint_hashes(source)) and steps(source) == [4, 8]
        if "4" not in outcome.run.first_error_line:
            outcome.problems.append("the message does not name the older step 4")
        return outcome

    # Runs that are refused before they train.

    def _refused(self, case: str, flags: list[str], named: str, hold_lock: bool = False) -> Outcome:
        """A resumed run that must be refused (exit 2) with a line containing `named`, touching nothing."""
        from jaxlm.runs.lock import WorkdirLock

        outcome = Outcome(case, 2)
        workdir = self.workdir(case)
        before = checkpoint_hashes(workdir)
        with WorkdirLock(workdir) if hold_lock else contextlib.nullcontext():  # this process plays a first run
            outcome.run = run(workdir, "--config.train.steps=12", *flags)
        _check_stop(outcome)
        if named not in outcome.run.first_error_line:
            outcome.problems.append(f"the message does not say {named!r}")
        outcome.intact = _intact(before, checkpoint_hashes(workdir))
        _resume(outcome, workdir, 8, "--config.train.steps=12")
        return outcome

    def different_model(self) -> Outcome:
        return self._refused("different_model", ["--config.model.width=64"], "model.width")

    def busy_workdir(self) -> Outcome:
        return self._refused("busy_workdir", [], "is in use by pid", hold_lock=True)

    def bad_optimizer_value(self) -> Outcome:
        return self._refused("bad_optimizer_value", ["--config.train.b2=95"], "train.b2")

    def unrepresentable_learning_rate(self) -> Outcome:
        """1e39 is finite in Python and inf in float32, where the update is computed: refused up front (a
        non-finite update that happens anyway is caught by the step's state check, tests/train/test_step.py)."""
        return self._refused("unrepresentable_learning_rate", ["--config.train.learning_rate=1e39"], "learning_rate")

    # Training that goes wrong.

    def diverging_loss(self) -> Outcome:
        outcome = Outcome("diverging_loss", 3)
        workdir = self.workdir(outcome.case)  # from step 8 of a stable run, with clipping now off
        before = checkpoint_hashes(workdir)
        flags = ["--config.train.steps=40", "--config.train.clip_norm=0", "--config.train.warmup_steps=0"]
        outcome.run = run(workdir, *flags, "--config.train.learning_rate=1e6")
        _check_stop(outcome)
        outcome.intact = _intact(before, checkpoint_hashes(workdir))
        self._all_saved_finite(outcome, workdir)
        newest = steps(workdir)[-1]
        if f"the last good checkpoint is step {newest}" not in outcome.run.stderr:
            outcome.problems.append(f"the stop line does not name step {newest} as the last good checkpoint")
        _resume(outcome, workdir, newest, *flags)
        return outcome

    @staticmethod
    def _all_saved_finite(outcome: Outcome, workdir: str) -> None:
        import jax
        import numpy as np

        from jaxlm.runs.reader import restore_params

        params = restore_params(workdir)[1]
        if not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params)):
            outcome.problems.append("the newest checkpoint holds non-finite parameters")

    # Saves that cannot be written.

    def read_only_checkpoints(self) -> Outcome:
        outcome = Outcome("read_only_checkpoints", 3)
        if os.geteuid() != 0 or shutil.which("setpriv") is None:
            outcome.skipped = "needs root and setpriv to make permissions apply to a root process"
            return outcome
        workdir = self.workdir(outcome.case)
        directory = os.path.join(workdir, "checkpoints")
        before = checkpoint_hashes(workdir)
        os.chmod(directory, 0o555)
        try:
            outcome.run = run(workdir, "--config.train.steps=16", prefix=tuple(SETPRIV))
        finally:
            os.chmod(directory, 0o755)
        _check_stop(outcome)
        if "step 12" not in outcome.run.first_error_line:
            outcome.problems.append("the stop line does not name step 12, the save that failed")
        outcome.intact = _intact(before, checkpoint_hashes(workdir)) and steps(workdir) == [4, 8]
        _resume(outcome, workdir, 8, "--config.train.steps=12")
        return outcome

    def full_disk(self) -> Outcome:
        outcome = Outcome("full_disk", 3)
        workdir = self.workdir(outcome.case, from_base=False)
        directory = os.path.join(workdir, "checkpoints")
        os.makedirs(directory)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", directory], capture_output=True)
        if mounted.returncode != 0:
            outcome.skipped = f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'})"
            return outcome
        try:
            first = run(workdir, "--config.train.steps=8")
            if first.code != 0 or steps(workdir) != [4, 8]:
                outcome.problems.append(f"the run before the fault failed: {first.stderr[-300:]!r}")
                return outcome
            before = checkpoint_hashes(workdir)
            filler = _fill(directory, leave=16 * 1024)  # room for a save to start, not to finish
            outcome.run = run(workdir, "--config.train.steps=16")
            _check_stop(outcome)
            if "step 12" not in outcome.run.first_error_line:
                outcome.problems.append("the stop line does not name step 12, the save that failed")
            outcome.intact = _intact(before, checkpoint_hashes(workdir)) and steps(workdir) == [4, 8]
            os.remove(filler)
            _resume(outcome, workdir, 8, "--config.train.steps=12")
        finally:
            subprocess.run(["umount", directory], check=False)
        return outcome

    # Signals.

    def _signalled(
        self,
        outcome: Outcome,
        workdir: str,
        flags: list[str],
        when: Callable[[str], bool],
        signals: list[int],
        delay: float = 0.0,
    ) -> Run:
        """Runs with `flags`, sending `signals` (0.05 s apart) `delay` s after a stdout line satisfies `when`."""
        sent = threading.Event()

        def watch(line: str, process: subprocess.Popen) -> None:
            if not sent.is_set() and when(line):
                sent.set()
                time.sleep(delay)
                for i, signum in enumerate(signals):
                    if i:
                        time.sleep(0.05)
                    process.send_signal(signum)

        result = run(workdir, *flags, on_stdout=watch)
        if not sent.is_set():
            outcome.problems.append("the moment to send the signal never came")
        return result

    def _stopped_by_signal(
        self,
        case: str,
        when: Callable[[str], bool],
        *flags: str,
        signals=(signal.SIGTERM,),
        expected: int = 4,
        delay: float = 0.0,
    ) -> Outcome:
        outcome = Outcome(case, expected)
        workdir = self.workdir(case, from_base=False)
        run_flags = ["--config.train.steps=40", *flags]
        outcome.run = self._signalled(outcome, workdir, run_flags, when, list(signals), delay)
        _check_stop(outcome)
        saved = steps(workdir)
        if not saved:
            outcome.problems.append("no checkpoint to resume from")
            return outcome
        before = checkpoint_hashes(workdir)
        newest = saved[-1]
        # keep=10: the resumed run's new checkpoint must not rotate an old one out of the comparison
        _resume(outcome, workdir, newest, *flags, f"--config.train.steps={newest + 2}", "--config.checkpoint.keep=10")
        outcome.intact = _intact(before, checkpoint_hashes(workdir))
        return outcome

    def sigterm_in_first_compile(self) -> Outcome:
        return self._stopped_by_signal("sigterm_in_first_compile", lambda line: line.startswith("config |"))

    def sigterm_while_training(self) -> Outcome:
        return self._stopped_by_signal("sigterm_while_training", lambda line: line.startswith("step      6/"))

    def sigterm_in_evaluation(self) -> Outcome:
        # Half the corpus held out and all of it evaluated at step 5: an evaluation of about a thousand batches.
        return self._stopped_by_signal(
            "sigterm_in_evaluation",
            lambda line: line.startswith("step      5/"),
            "--config.eval.every=5",
            "--config.eval.max_batches=0",
            "--config.data.val_fraction=0.5",
        )

    def sigterm_in_async_save(self) -> Outcome:
        # Step 4's save starts right after its step line is printed.
        return self._stopped_by_signal("sigterm_in_async_save", lambda line: line.startswith("step      4/"))

    def sigterm_with_steps_queued(self) -> Outcome:
        """No log line until the end, so nothing makes the loop wait for the devices: the signal must still stop
        the run within a few steps (the loop keeps at most RUN_AHEAD steps in flight), not after all 300."""
        outcome = self._stopped_by_signal(
            "sigterm_with_steps_queued",
            lambda line: line.startswith("logs  |"),
            "--config.train.steps=300",
            "--config.log.every=300",
            "--config.checkpoint.every=0",
            "--config.model.num_layers=4",
            "--config.model.width=128",
            "--config.data.seq_len=128",
            delay=1.0,
        )
        if outcome.run.code == 0:
            outcome.problems.append("the run trained to its end instead of stopping")
        return outcome

    def sigterm_twice(self) -> Outcome:
        return self._stopped_by_signal(
            "sigterm_twice", lambda line: line.startswith("step      6/"), signals=(signal.SIGTERM, signal.SIGTERM)
        )

    def sigint_twice(self) -> Outcome:
        """Ctrl-C twice: the second one interrupts at once (exit 130), and the newest complete checkpoint
        still resumes."""
        return self._stopped_by_signal(
            "sigint_twice",
            lambda line: line.startswith("step      6/"),  # after checkpoint 4; the second may cut the stop's save
            signals=(signal.SIGINT, signal.SIGINT),
            expected=130,
        )


CASES = [
    "truncated_newest",
    "no_commit_marker",
    "restore_from_unreadable",
    "different_model",
    "busy_workdir",
    "bad_optimizer_value",
    "diverging_loss",
    "unrepresentable_learning_rate",
    "read_only_checkpoints",
    "full_disk",
    "sigterm_in_first_compile",
    "sigterm_while_training",
    "sigterm_in_evaluation",
    "sigterm_in_async_save",
    "sigterm_with_steps_queued",
    "sigterm_twice",
    "sigint_twice",
]


def _truncate_params(workdir: str, step: int) -> None:
    """Cuts every parameter data file of checkpoint `step` to 8 bytes: a save a crash left half written."""
    for path in glob.glob(os.path.join(workdir, "checkpoints", str(step), "params", "d", "*")):
        with open(path, "r+b") as f:
            f.truncate(8)


def _fill(directory: str, leave: int) -> str:
    """A file that takes all but about `leave` bytes of the filesystem holding `directory`; returns its path."""
    path = os.path.join(directory, "filler")
    stat = os.statvfs(directory)
    size = max(stat.f_bavail * stat.f_frsize - leave, 0)
    with open(path, "wb") as f:
        f.write(b"\0" * size)
    return path


def main(argv: list[str]) -> int:
    names = argv[1:] or CASES
    unknown = [name for name in names if name not in CASES]
    if unknown:
        print(f"unknown case(s) {', '.join(unknown)}; the cases are: {', '.join(CASES)}", file=sys.stderr)
        return 2
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="fault_sweep-") as scratch:
        sweep = Sweep(scratch)
        for name in names:
            outcome = getattr(sweep, name)()
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    ran = [o for o in outcomes if not o.skipped]
    clean = sum(o.clean for o in ran)
    lost = sum(o.intact is False for o in ran)
    print(
        f"summary | {clean}/{len(ran)} faults handled, {lost} with checkpoints lost, {len(outcomes) - len(ran)} skipped"
    )
    return 0 if clean == len(ran) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
