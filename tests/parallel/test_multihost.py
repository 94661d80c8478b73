"""Two processes on localhost (4 fake devices each, gloo collectives) form one 8-device job: they
train, save a sharded checkpoint together, resume it together, and match one 8-device process."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = [
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
    "--config.train.steps=8",
    "--config.checkpoint.every=4",
    "--config.mesh.preset=fsdp",
]


def _env(devices: int) -> dict:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {os.environ.get('JAXLM_TEST_XLA_FLAGS', '')}",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir, *flags) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "run_pretrain.py"),
                *FLAGS,
                *flags,
                f"--workdir={workdir}",
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(4),
        )
        for i in range(2)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def _losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


@pytest.mark.slow
def test_two_processes_match_one_and_resume_together(tmp_path):
    reference = tmp_path / "one-process"
    single = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *FLAGS, f"--workdir={reference}"],
        capture_output=True,
        text=True,
        env=_env(8),
        timeout=300,
    )
    assert single.returncode == 0, single.stderr

    workdir = tmp_path / "two-processes"
    first = _two_processes(workdir, "--config.train.stop_at=4")
    assert [r.returncode for r in first] == [0, 0], first[0].stderr + first[1].stderr
    assert "8 x cpu in 2 process(es)" in first[0].stdout
    # Only process 0 reports. (Gloo's C++ threads also write to stdout, at times mid-line, so look
    # for jaxlm's own line heads rather than demanding only Gloo lines.)
    ours = ("jaxlm |", "data  |", "step ", "eval ", "save  |", "done  |", "sample |", "params |")
    assert not [line for line in first[1].stdout.splitlines() if any(head in line for head in ours)]
    assert os.path.exists(workdir / "checkpoints" / "4" / "commit_success.txt")

    second = _two_processes(workdir)
    assert [r.returncode for r in second] == [0, 0], second[0].stderr + second[1].stderr
    assert "resume | step 4" in second[0].stdout
    expected, got = _losses(reference), _losses(workdir)
    assert sorted(got) == list(range(1, 9))
    np.testing.assert_allclose([got[s] for s in range(1, 9)], [expected[s] for s in range(1, 9)], rtol=1e-5)
