"""The start summary: parameters per module, bytes per device from the shardings, the config's diff."""

import os

import jax

from jaxlm.config import base_config, load_recipe, model_config
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.partition import per_device_bytes
from jaxlm.train.summary import config_diff, param_groups, start_lines
from jaxlm.train.trainer import make_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _trainer(preset: str):
    config = base_config()
    config.model.num_layers, config.model.width, config.model.num_heads = 2, 64, 4
    config.data.seq_len, config.data.batch_size, config.mesh.preset = 32, 8, preset
    return config, make_trainer(config, model_config(config, 128), make_mesh(config.mesh))


def _bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_param_groups_are_the_top_level_modules_and_add_up():
    _, trainer = _trainer("dp")
    groups = param_groups(trainer.abstract_params)
    assert set(groups) == {"blocks", "final_norm", "lm_head", "token_embed"}
    assert list(groups)[0] == "blocks"  # largest first
    assert sum(groups.values()) == sum(x.size for x in jax.tree.leaves(trainer.abstract_params))


def test_replicated_state_is_whole_on_each_device_and_fsdp_splits_it():
    assert jax.device_count() == 8
    _, dp = _trainer("dp")
    total = _bytes(dp.abstract_params)
    assert per_device_bytes(dp.abstract_params, dp.params_sharding) == total
    # AdamW keeps two moments per parameter, plus a few scalar counters.
    opt = per_device_bytes(dp.abstract_state.opt_state, dp.state_sharding.opt_state)
    assert 2 * total <= opt <= 2 * total + 64
    _, fsdp = _trainer("fsdp")
    sharded = per_device_bytes(fsdp.abstract_params, fsdp.params_sharding)
    assert total / 8 <= sharded < total / 2  # norms stay replicated, the matrices are split 8 ways


def test_config_diff_lists_only_the_changed_fields():
    recipe = os.path.join(ROOT, "configs", "bert_tiny.py")
    config = load_recipe(recipe)
    assert config_diff(config, load_recipe(recipe)) == []
    config.model.num_layers, config.train.steps = 1, 30
    assert config_diff(config, load_recipe(recipe)) == [("model.num_layers", 1, 4), ("train.steps", 30, 450)]


def test_start_lines_name_modules_memory_and_the_diff():
    config, trainer = _trainer("fsdp")
    default = os.path.join(ROOT, "configs", "default.py")
    lines = start_lines(
        config,
        ("default.py", load_recipe(default)),
        trainer.abstract_params,
        trainer.abstract_state,
        trainer.state_sharding,
        trainer.params_sharding,
    )
    assert lines[0].startswith("params | blocks ") and "lm_head" in lines[0]
    assert lines[1].startswith("memory | ") and "optimizer state per device" in lines[1]
    assert lines[2] == (
        "config | vs default.py: data.batch_size 12 -> 8, data.seq_len 128 -> 32, "
        "mesh.preset 'dp' -> 'fsdp', model.num_heads 6 -> 4, model.num_layers 4 -> 2, "
        "model.width 192 -> 64"
    )


def test_without_a_recipe_the_diff_is_against_the_defaults():
    """A run started from Python (a notebook) names no recipe: the defaults are the reference."""
    config, trainer = _trainer("dp")
    line = start_lines(
        config, None, trainer.abstract_params, trainer.abstract_state, trainer.state_sharding, trainer.params_sharding
    )[2]
    assert line.startswith("config | vs jaxlm/config.py") and "model.width 192 -> 64" in line
