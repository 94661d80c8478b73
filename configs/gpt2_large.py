"""GPT-2 large (774M): 36 layers, 1280 wide, 20 heads, context 1024; gpt2_medium's recipe otherwise.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v6e-16 (checked ahead of time: python -m jaxlm.aot --config=configs/gpt2_large.py --topology=v6e-16):
mesh fsdp=16, remat dots, splash attention, bfloat16: 14.6 GiB of 32 GiB HBM per chip.
"""

from jaxlm.config import sibling_recipe


def get_config():
    config = sibling_recipe(__file__, "gpt2_medium.py")  # what follows is all that differs
    config.model.num_layers = 36
    config.model.width = 1280
    config.model.num_heads = 20
    config.model.remat = "dots"  # keep the matmul outputs, recompute the rest (no remat does not fit)

    config.train.learning_rate = 2.5e-4  # GPT-3's peak for 760M
    config.train.end_learning_rate = 2.5e-5
    config.train.grad_accum_steps = 4  # 128 rows a micro-batch: 8 a chip on v6e-16
    return config
