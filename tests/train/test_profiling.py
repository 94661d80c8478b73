"""Profiler traces (log.profile_steps), and in whole runs the time breakdown beside them (the `time |` line and its
metrics record; the clock itself is tests/train/test_goodput.py's).

A trace is checked where TensorBoard's profile plugin looks for it, read back with jax.profiler (which steps it
holds), and, where xprof is installed (the `test` extra), listed by the plugin's own code.
"""

import glob
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from jaxlm.config import ConfigError, base_config, profile_range, validate
from jaxlm.train.goodput import CATEGORIES, Clock
from jaxlm.train.profiling import Profiler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _traced_steps(session_dir) -> set[int]:
    """The step numbers of the train-step annotations in the session's trace."""
    [path] = glob.glob(os.path.join(session_dir, "*.xplane.pb"))
    steps = set()
    for plane in jax.profiler.ProfileData.from_file(path).planes:
        for line in plane.lines:
            steps |= {int(dict(e.stats)["step_num"]) for e in line.events if e.name == "train"}
    return steps


def _steps(profiler: Profiler, steps: range, clock: Clock, *, fail_at: int = 0) -> None:
    """A stand-in for the loop: a small jitted step per step, with the profiler's calls where the loop makes them."""
    step_fn = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((64, 64))
    try:
        for step in steps:
            profiler.before_step(step, clock)
            with profiler.annotate(step):
                x = step_fn(x)
            if step == fail_at:
                raise RuntimeError("the run failed")
            profiler.after_step(step, x, clock)
    finally:
        profiler.close()


def test_profile_range_reads_start_and_count():
    assert profile_range("10:5") == (10, 14)
    assert profile_range("1:1") == (1, 1)
    assert profile_range("") is None and profile_range("10") is None


BAD_PROFILE_STEPS = [
    ("10:x", 'must be "START:COUNT" with whole numbers'),
    ("10", 'must be "START:COUNT" with whole numbers'),
    ("-1:5", 'must be "START:COUNT" with whole numbers'),
    ("0:5", "START must be >= 1"),
    ("10:0", "COUNT must be >= 1"),
    ("451:1", "steps 451..451 run past train.steps=450"),
    ("448:5", "steps 448..452 run past train.steps=450"),
]


@pytest.mark.parametrize("value,message", BAD_PROFILE_STEPS, ids=[v for v, _ in BAD_PROFILE_STEPS])
def test_bad_profile_steps_are_refused_in_one_line(value, message):
    config = base_config()
    config.log.profile_steps = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    text = str(error.value)
    assert text.startswith(f"config.log.profile_steps={value!r}: ") and message in text and "\n" not in text


def test_all_processes_without_steps_is_refused():
    config = base_config()
    config.log.profile_all_processes = True
    with pytest.raises(ConfigError, match="log.profile_all_processes=True: traces nothing without"):
        validate(config)
    config.log.profile_steps = "450:1"
    validate(config)


def test_a_bad_value_exits_2_before_training(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "run_pretrain.py"),
            "--config.log.profile_steps=0:5",
            f"--workdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config.log.profile_steps='0:5': START must be >= 1 (steps count from 1)"
    )


def test_the_trace_holds_the_asked_steps_where_the_plugin_looks(tmp_path):
    said = []
    clock = Clock()
    profiler = Profiler((3, 4), str(tmp_path), first_step=0, last_step=6, traced=True, say=said.append)
    _steps(profiler, range(1, 7), clock)
    [session] = glob.glob(str(tmp_path / "plugins" / "profile" / "*"))
    assert os.path.basename(session) == "steps_3-4"
    assert os.path.getsize(glob.glob(os.path.join(session, "*.xplane.pb"))[0]) > 0
    assert glob.glob(os.path.join(session, "*.trace.json.gz"))  # what Perfetto opens
    assert _traced_steps(session) == {3, 4}
    assert said == [
        f"profile | steps 3..4 -> {session}; open it with tensorboard --logdir {tmp_path} (Profile tab), XProf or "
        "Perfetto (README: Profiling a run)"
    ]
    assert clock.seconds["profile"] > 0


def test_a_run_that_stops_inside_the_range_traces_up_to_its_last_step(tmp_path):
    profiler = Profiler((3, 8), str(tmp_path), first_step=0, last_step=4, traced=True, say=lambda line: None)
    _steps(profiler, range(1, 5), Clock())
    assert _traced_steps(tmp_path / "plugins" / "profile" / "steps_3-4") == {3, 4}


def test_an_error_while_tracing_stops_the_trace_keeping_what_it_holds(tmp_path):
    said = []
    profiler = Profiler((2, 5), str(tmp_path), first_step=0, last_step=6, traced=True, say=said.append)
    with pytest.raises(RuntimeError, match="the run failed"):
        _steps(profiler, range(1, 7), Clock(), fail_at=3)
    session = tmp_path / "plugins" / "profile" / "steps_2-5"
    assert _traced_steps(session) == {2, 3}
    assert said == [f"profile | stopped early: the trace in {session} ends where the run did"]
    jax.profiler.start_trace(str(tmp_path / "again"))  # the profiler is free again
    jax.profiler.stop_trace()


@pytest.mark.parametrize(
    "first_step,last_step,traced,message",
    [
        (3, 6, True, "profile | no trace: this run resumes from step 3, past step 3 where it would start"),
        (0, 2, True, "profile | no trace: this run stops at step 2, before step 3 where it would start"),
        (0, 6, False, None),
    ],
    ids=["resumed past START", "stops before START", "not this process"],
)
def test_no_trace_when_this_run_does_not_run_the_steps_or_is_not_asked(
    tmp_path, first_step, last_step, traced, message
):
    said = []
    profiler = Profiler(
        (3, 4), str(tmp_path), first_step=first_step, last_step=last_step, traced=traced, say=said.append
    )
    _steps(profiler, range(first_step + 1, last_step + 1), Clock())
    assert not os.path.exists(tmp_path / "plugins")
    assert said == ([message] if message else [])


# Two invocations of one tiny run, as a user runs them: the first stops at step 6 without profiling, the second
# resumes and traces steps 8..10.
TINY = [
    "--config.model.num_layers=1",
    "--config.model.width=32",
    "--config.model.num_heads=2",
    "--config.data.seq_len=32",
    "--config.data.batch_size=4",
    "--config.data.tokenizer.kind=char",
    "--config.train.steps=12",
    "--config.train.warmup_steps=2",
    "--config.log.every=4",
    "--config.eval.every=4",
    "--config.eval.max_batches=1",
    "--config.checkpoint.every=4",
    "--config.sample.num_tokens=4",
]


@pytest.fixture(scope="module")
def two_invocations(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ.get("JAXLM_TEST_XLA_FLAGS", "")}
    runs = []
    for flags in (["--config.train.stop_at=6"], ["--config.log.profile_steps=8:3"]):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *TINY, *flags, f"--workdir={workdir}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
        runs.append((result.stdout, time.perf_counter() - start, os.path.exists(workdir / "profile")))
    with open(workdir / "metrics.jsonl") as f:
        records = [r for r in map(json.loads, f) if "goodput" in r]
    return workdir, runs, records


@pytest.mark.slow
def test_a_profiled_run_writes_the_trace_and_an_unprofiled_one_none(two_invocations):
    workdir, runs, _ = two_invocations
    (first_out, _, traced_after_first), (second_out, _, _) = runs
    assert not traced_after_first and "profile |" not in first_out
    session = workdir / "profile" / "plugins" / "profile" / "steps_8-10"
    assert f"profile | steps 8..10 -> {session}; " in second_out
    assert _traced_steps(session) == {8, 9, 10}


@pytest.mark.slow
def test_the_profile_plugin_lists_the_trace(two_invocations):
    """TensorBoard's profile plugin (xprof's code) finds the run and the tools it can show for it."""
    pytest.importorskip("xprof.profile_plugin", reason="xprof is in the test extra")
    from xprof.profile_plugin import ProfilePlugin
    from xprof.standalone.base_plugin import TBContext
    from xprof.standalone.plugin_event_multiplexer import DataProvider

    logdir = str(two_invocations[0] / "profile")
    plugin = ProfilePlugin(TBContext(logdir, DataProvider(logdir), TBContext.Flags(False)))
    assert plugin.runs_imp() == ["steps_8-10"]
    tools = plugin.run_tools_imp("steps_8-10")
    assert "overview_page" in tools and any(tool.startswith("trace_viewer") for tool in tools), tools


@pytest.mark.slow
def test_each_invocation_reports_where_its_time_went(two_invocations):
    _, runs, records = two_invocations
    assert [r["step"] for r in records] == [6, 12]
    for (stdout, wall, _), record, profiled in zip(runs, records, (False, True)):
        seconds = {name: record[f"time_{name}_s"] for name in CATEGORIES}
        assert record["time_total_s"] == pytest.approx(sum(seconds.values()))
        assert 0 < record["time_total_s"] < wall  # the process also imports and samples, outside the breakdown
        assert record["goodput"] == pytest.approx(seconds["steps"] / record["time_total_s"])
        for name in ("steps", "data", "eval", "checkpoints", "compile", "startup"):
            assert seconds[name] > 0, name
        assert (seconds["profile"] > 0) == profiled
        [line] = [line for line in stdout.splitlines() if line.startswith("time  | ")]
        assert line.startswith(f"time  | {record['time_total_s']:.1f} s: steps {seconds['steps']:.1f} s (")
