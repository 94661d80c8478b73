"""BERT large (335M): 24 layers, 1024 wide, 16 heads, sequence 512; bert_base's recipe otherwise.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v5e-8 (checked ahead of time: python -m jaxlm.aot --config=configs/bert_large.py --topology=v5e-8):
mesh fsdp=8, remat full, bfloat16: 8.2 GiB of 16 GiB HBM per chip.
"""

from jaxlm.config import sibling_recipe


def get_config():
    config = sibling_recipe(__file__, "bert_base.py")  # what follows is all that differs
    config.model.num_layers = 24
    config.model.width = 1024
    config.model.num_heads = 16
    config.model.remat = "full"  # keep only each block's input; recompute the block in the backward pass

    config.mesh.preset = "fsdp"  # parameters and AdamW split over every chip
    return config
