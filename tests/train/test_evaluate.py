"""Tests for jaxlm/train/evaluate.py on a CPU split into devices (mesh.cpu_devices)."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Many independent eval steps with an all-reduce each, over two CPU devices in one process. Dispatched
# back to back they could deadlock XLA:CPU's shared thread pool (2 of 3 shakespeare_char runs aborted
# at their first eval), so evaluate runs one at a time there: checked directly, since the hang is a race.
_SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jaxlm.train.evaluate import evaluate

    mesh = Mesh(np.array(jax.devices()), ("data",))
    params = jax.device_put(jnp.eye(256) * 0.5, NamedSharding(mesh, P()))

    @jax.jit
    def eval_step(params, batch):
        h_BxD = jnp.tanh(batch["x"] @ params) @ params  # rows split over the devices: the sums all-reduce
        return {"loss_sum": jnp.sum(h_BxD), "weight_sum": jnp.float32(batch["x"].size),
                "correct_sum": jnp.sum(h_BxD > 0).astype(jnp.float32)}

    # One program at a time: when the next eval step is dispatched, the last one's sums are ready.
    ready_at_dispatch, last = [], []

    def watched_step(params, batch):
        if last:
            ready_at_dispatch.append(all(leaf.is_ready() for leaf in jax.tree.leaves(last[-1])))
        last.append(eval_step(params, batch))
        return last[-1]

    values = np.linspace(0.0, 1.0, 400, dtype=np.float32)
    batches = [{"x": jax.device_put(jnp.full((64, 256), v), NamedSharding(mesh, P("data")))} for v in values]
    want = float(np.mean(0.5 * np.tanh(0.5 * values)))
    got = evaluate(watched_step, params, batches)
    assert abs(got["val_loss"] - want) < 1e-5, (got, want)
    assert len(ready_at_dispatch) == len(batches) - 1 and all(ready_at_dispatch), ready_at_dispatch.count(False)
    print("evaluated", len(batches))
""")


def test_evaluate_over_split_cpu_devices_finishes_with_the_right_mean():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get(
        "JAXLM_TEST_XLA_FLAGS", ""
    )  # two devices from jax_num_cpu_devices, as mesh.cpu_devices=2 makes them
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "evaluated 400" in result.stdout
