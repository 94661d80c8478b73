"""GPT-2 XL (1.5B): 48 layers, 1600 wide, 25 heads, context 1024; gpt2_medium's recipe otherwise.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v4-32 (checked ahead of time: python -m jaxlm.aot --config=configs/gpt2_xl.py --topology=v4-32):
mesh fsdp=16, remat dots, splash attention, bfloat16: 21.6 GiB of 32 GiB HBM per chip.
"""

from jaxlm.config import sibling_recipe


def get_config():
    config = sibling_recipe(__file__, "gpt2_medium.py")  # what follows is all that differs
    config.data.batch_size = 1024  # ~1M tokens a step (GPT-3's batch for 1.3B)

    config.model.num_layers = 48
    config.model.width = 1600
    config.model.num_heads = 25  # tensor splits of 2, 4 or 8 do not divide 25 heads: fsdp, not tp
    config.model.remat = "dots"  # keep the matmul outputs, recompute the rest

    config.train.steps = 300_000
    config.train.learning_rate = 2e-4  # GPT-3's peak for 1.3B
    config.train.end_learning_rate = 2e-5
    config.train.grad_accum_steps = 8  # 128 rows a micro-batch: 8 a chip on v4-32
    return config
