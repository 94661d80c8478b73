"""python -m jaxlm.export and python -m jaxlm.generate: a trained run out to transformers and back in."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlm.export.__main__ import main
from jaxlm.generate import decode
from jaxlm.generate.__main__ import main as generate_main
from jaxlm.model.transformer import Transformer
from jaxlm.runs.reader import open_run, restore_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([f"--workdir={tmp_path / 'missing'}", f"--out={tmp_path / 'hf'}"]) == 2
    assert main([f"--workdir={tmp_path}", f"--out={tmp_path / 'hf'}"]) == 2  # a directory, but no run
    assert main([f"--from_hf={tmp_path}", f"--out={tmp_path / 'run'}"]) == 2
    assert main([f"--out={tmp_path / 'hf'}"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in errors] == ["error"] * 4
    assert "missing: no such directory" in errors[0] and "no complete checkpoint" in errors[1]
    assert "no config.json" in errors[2] and "exactly one of --workdir" in errors[3]
    assert generate_main([f"--workdir={tmp_path / 'missing'}"]) == 2
    capsys.readouterr()
    (tmp_path / "a_file").write_text("mine")
    assert main([f"--workdir={tmp_path}", f"--out={tmp_path / 'a_file'}"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --out={tmp_path / 'a_file'} is a file, not a folder; give a folder (it is created if missing)"
    )
    assert (tmp_path / "a_file").read_text() == "mine"


def _train(workdir, recipe: str = "default.py", *flags: str) -> str:
    """run_pretrain.py with `recipe` for 20 steps (one device, as on a laptop)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "run_pretrain.py"),
            f"--config={ROOT}/configs/{recipe}",
            f"--workdir={workdir}",
            "--config.train.steps=20",
            "--config.train.warmup_steps=5",
            "--config.eval.max_batches=2",
            "--config.sample.num_tokens=4",
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return str(workdir)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """The default recipe, trained for 20 steps by run_pretrain.py."""
    return _train(tmp_path_factory.mktemp("run"))


@pytest.mark.slow
def test_trained_run_exports_loads_in_transformers_and_generates_the_same(trained_run, tmp_path, capsys):
    out = str(tmp_path / "hf")
    assert main([f"--workdir={trained_run}", f"--out={out}"]) == 0
    assert "exported" in capsys.readouterr().out
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"

    trained = open_run(trained_run)
    model_cfg, params, ours = trained.model_cfg, trained.params, trained.tokenizer
    prompts = ["The ", "def f(x):\n    return"]
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    assert [row[mask.bool()].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask)] == [
        ours.encode(p) for p in prompts
    ]
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=16, do_sample=False)
    theirs = [
        row[: row.index(ours.eos_id)] if ours.eos_id in row else row
        for row in generated[:, batch.input_ids.shape[1] :].tolist()
    ]
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))[0]
    assert (
        decode.generate(
            graphdef,
            params,
            [ours.encode(p) for p in prompts],
            max_new_tokens=16,
            max_len=model_cfg.max_len,
            eos_id=ours.eos_id,
        )
        == theirs
    )
    assert tokenizer.decode(generated[0], skip_special_tokens=True).startswith("The ")

    assert generate_main([f"--workdir={trained_run}", "--prompt=The ", "--temperature=0", "--num_tokens=16"]) == 0
    assert capsys.readouterr().out == f"--- step 20 | 'The '\nThe {ours.decode(theirs[0])}\n"

    # And back in: a checkpoint a new run can start from (checkpoint.restore_from), with the same tokenizer.
    run = str(tmp_path / "imported")
    assert main([f"--from_hf={out}", f"--out={run}"]) == 0
    printed = capsys.readouterr().out
    assert f"--config.checkpoint.restore_from={run}" in printed
    config, imported, step = restore_params(run)
    assert step == 0 and config.model.family == "llama"
    jax.tree.map(np.testing.assert_array_equal, imported, params)
    with open(config.data.tokenizer.path, "rb") as f:
        assert f.read() == ours.serialized()
    assert open_run(run).tokenizer.serialized() == ours.serialized()  # the checkpoint carries it too
    assert not os.path.exists(os.path.join(run, "checkpoints", "0", "opt_state"))  # params only: no optimizer

    # The printed command works as printed (shortened here to a few steps): a new workdir, the same tokenizer.
    command = next(line.strip() for line in printed.splitlines() if line.strip().startswith("python run_pretrain.py"))
    shorter = [
        "--config.train.steps=4",
        "--config.train.warmup_steps=1",
        "--config.eval.max_batches=1",
        "--config.sample.num_tokens=4",
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    continued = subprocess.run(
        [sys.executable, *command.split()[1:], *shorter], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert continued.returncode == 0, continued.stderr
    assert f"start | weights from {run}/checkpoints step 0" in continued.stdout
    assert open_run(f"{run}_pretrain").tokenizer.serialized() == ours.serialized()


@pytest.mark.slow
def test_trained_bert_exports_and_fills_masks_as_the_transformers_pipeline_does(tmp_path, capsys):
    run = _train(
        tmp_path / "run",
        "bert_tiny.py",
        "--config.model.num_layers=1",
        "--config.model.width=32",
        "--config.model.num_heads=2",
        "--config.data.seq_len=32",
        "--config.data.tokenizer.vocab_size=400",
    )
    text = "The <mask> statement."
    assert generate_main([f"--workdir={run}", f"--prompt={text}"]) == 0
    ours = capsys.readouterr().out.splitlines()[1]  # "  <mask> at 2: 'x' 0.123, ..."
    assert main([f"--workdir={run}", f"--out={tmp_path / 'hf'}"]) == 0
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "hf"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    theirs = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=5)(text)
    assert ours.split(": ", 1)[1] == ", ".join(f"{t['token_str']!r} {t['score']:.3f}" for t in theirs)
