"""Mesh sizes from presets and overrides, the logical-axis rules, and the errors a bad mesh gives."""

import jax
import ml_collections
import pytest

from jaxlm.config import ConfigError
from jaxlm.model.config import ModelConfig
from jaxlm.parallel.mesh import make_mesh, mesh_shape
from jaxlm.parallel.rules import make_rules
from jaxlm.train.partition import check_fits


def _mesh_config(preset="dp", data=0, fsdp=0, tensor=0, rules=""):
    return ml_collections.ConfigDict(dict(preset=preset, data=data, fsdp=fsdp, tensor=tensor, rules=rules))


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("dp", {"data": 8, "fsdp": 1, "tensor": 1}),
        ("fsdp", {"data": 1, "fsdp": 8, "tensor": 1}),
        ("tp", {"data": 1, "fsdp": 1, "tensor": 8}),
        ("fsdp_tp", {"data": 1, "fsdp": 4, "tensor": 2}),
    ],
)
def test_presets_fill_the_devices(preset, expected):
    assert mesh_shape(_mesh_config(preset), 8) == expected
    assert dict(make_mesh(_mesh_config(preset)).shape) == expected


def test_overrides_and_minus_one():
    assert mesh_shape(_mesh_config("fsdp", data=2), 8) == {"data": 2, "fsdp": 4, "tensor": 1}
    assert mesh_shape(_mesh_config("dp", data=2, fsdp=-1, tensor=2), 8) == {"data": 2, "fsdp": 2, "tensor": 2}


@pytest.mark.parametrize(
    "mesh, message",
    [
        (_mesh_config("dp", data=3, fsdp=1), "makes 3 devices, but this job has 8"),
        (_mesh_config("dp", fsdp=3), "multiply to 3, which does not divide the 8 devices"),
        (_mesh_config("dp", fsdp=-1), "only one axis may be -1"),
        (_mesh_config("zero3"), "config.mesh.preset='zero3': must be one of dp, fsdp, tp, fsdp_tp"),
    ],
)
def test_bad_mesh_names_fields_and_numbers(mesh, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mesh_shape(mesh, 8)


def test_rules_map_logical_axes_to_mesh_axes():
    mesh = make_mesh(_mesh_config("fsdp_tp"))
    rules = make_rules()
    spec = rules.spec(("layers", "embed", "heads", "head_dim"), (2, 64, 8, 8), mesh)
    assert tuple(spec) == (None, "fsdp", "tensor", None)
    assert tuple(rules.spec(("batch", "length"))) == (("data", "fsdp"), None)
    # 3 key/value heads cannot be split 2 ways: that dimension stays whole rather than failing.
    assert tuple(rules.spec(("embed", "kv_heads", "head_dim"), (64, 3, 8), mesh)) == ("fsdp", None, None)


def test_rule_overrides():
    rules = make_rules("vocab=, embed=fsdp+data")
    assert rules.table["vocab"] == () and rules.table["embed"] == ("fsdp", "data")
    with pytest.raises(ConfigError, match="must read logical=mesh_axis"):
        make_rules("embed=model")


def test_a_mesh_axis_is_never_used_twice_in_one_array():
    rules = make_rules("vocab=fsdp")
    assert tuple(rules.spec(("vocab", "embed"))) == ("fsdp", None)


@pytest.mark.parametrize(
    "preset, field, message",
    [
        ("tp", "heads", "config.model.num_heads=6: is not divisible by the 8-way split over mesh.tensor=8"),
        ("tp", "mlp", "config.model.mlp_dim=100: is not divisible by the 8-way split"),
        ("dp", "batch", "config.data.batch_size=12: with train.grad_accum_steps=1 each micro-batch has 12 rows"),
    ],
)
def test_parallel_sizes_that_do_not_divide(preset, field, message):
    heads, mlp = (6, 128) if field == "heads" else (8, 100) if field == "mlp" else (8, 128)
    model_cfg = ModelConfig.for_family(
        "gpt2",
        vocab_size=64,
        width=48 if field == "heads" else 64,
        num_layers=1,
        num_heads=heads,
        num_kv_heads=heads,
        mlp_dim=mlp,
        max_len=16,
    )
    mesh = make_mesh(_mesh_config(preset))
    with pytest.raises(ConfigError, match=message):
        check_fits(mesh, make_rules(), model_cfg, batch_size=12 if field == "batch" else 8, grad_accum_steps=1)


def test_eight_fake_devices():
    assert jax.device_count() == 8


def test_a_layout_mesh_utils_refuses_falls_back_to_device_order_and_says_so(monkeypatch, caplog):
    """mesh_utils refuses shapes it cannot lay onto a physical torus; the mesh is then the devices in
    order (correct, slower collectives), with a warning naming the shape."""

    def refuse(*args, **kwargs):
        raise ValueError("cannot lay 2x2x2 onto this torus")

    monkeypatch.setattr("jaxlm.parallel.mesh.mesh_utils.create_device_mesh", refuse)
    devices = jax.devices()[::-1]  # an order create_device_mesh would not keep
    with caplog.at_level("WARNING"):
        mesh = make_mesh(_mesh_config("fsdp_tp", data=2, fsdp=2, tensor=2), devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert list(mesh.devices.flat) == devices
    assert "no topology-aware layout (cannot lay 2x2x2 onto this torus)" in caplog.text
