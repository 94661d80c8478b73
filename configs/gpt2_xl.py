"""GPT-2 XL (1.5B): 48 layers, 1600 wide, 25 heads, context 1024.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v4-32 (checked ahead of time: python -m jaxlm.aot --config=configs/gpt2_xl.py --topology=v4-32):
mesh fsdp=16, remat full, bfloat16: 18.7 GiB of 32 GiB HBM per chip.
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.seq_len = 1024
    config.data.batch_size = 1024  # ~1M tokens a step (GPT-3's batch for 1.3B)
    config.data.val_fraction = 0.005
    config.data.tokenizer.vocab_size = 50257  # GPT-2's vocabulary size

    config.model.family = "gpt2"
    config.model.num_layers = 48
    config.model.width = 1600
    config.model.num_heads = 25  # tensor splits of 2, 4 or 8 do not divide 25 heads: fsdp, not tp
    config.model.vocab_size = 50304  # 50257 rounded up to a multiple of 64: faster matmuls
    config.model.dtype = "bfloat16"
    config.model.remat = "full"  # keep only each block's input; recompute the block in the backward pass

    config.mesh.preset = "fsdp"  # parameters and AdamW split over every chip

    config.train.steps = 300_000
    config.train.learning_rate = 2e-4  # GPT-3's peak for 1.3B
    config.train.warmup_steps = 2000
    config.train.end_learning_rate = 2e-5
    config.train.b2 = 0.95
    config.train.weight_decay = 0.1
    config.train.grad_accum_steps = 8  # 128 rows a micro-batch: 8 a chip on v4-32

    config.eval.every = 2000
    config.eval.max_batches = 20
    config.log.every = 100
    return config
