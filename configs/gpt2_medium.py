"""GPT-2 medium (350M): 24 layers, 1024 wide, 16 heads, context 1024; gpt2_small's recipe otherwise.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v5e-16 (checked ahead of time: python -m jaxlm.aot --config=configs/gpt2_medium.py --topology=v5e-16):
mesh fsdp=16, remat none, splash attention, bfloat16: 12.1 GiB of 16 GiB HBM per chip.
"""

from jaxlm.config import sibling_recipe


def get_config():
    config = sibling_recipe(__file__, "gpt2_small.py")  # what follows is all that differs
    config.data.batch_size = 512  # ~0.5M tokens a step (GPT-3's batch for this size)

    config.model.num_layers = 24
    config.model.width = 1024
    config.model.num_heads = 16
    config.model.remat = "none"  # splash never holds L x L scores: nothing to recompute (12 GiB; "full": 2.3)

    config.mesh.preset = "fsdp"  # parameters and AdamW split over every chip

    config.train.learning_rate = 3e-4  # GPT-3's peak for 350M
    config.train.end_learning_rate = 3e-5
    config.train.grad_accum_steps = 8  # 64 rows a micro-batch: 4 a chip on v5e-16
    return config
