"""GPT-2 small (124M): 12 layers, 768 wide, 12 heads, context 1024 (nanoGPT's OpenWebText recipe).

Needs a real corpus: --config.data.path=GLOB (and an accelerator).

Fits v5e-8 (checked ahead of time: python -m jaxlm.aot --config=configs/gpt2_small.py --topology=v5e-8):
mesh data=8 (dp), remat dots, bfloat16: 11.7 GiB of 16 GiB HBM per chip.
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.seq_len = 1024
    config.data.batch_size = 480  # ~0.5M tokens a step
    config.data.val_fraction = 0.005
    config.data.tokenizer.vocab_size = 50257  # GPT-2's vocabulary size

    config.model.family = "gpt2"
    config.model.num_layers = 12
    config.model.width = 768
    config.model.num_heads = 12
    config.model.vocab_size = 50304  # 50257 rounded up to a multiple of 64: faster matmuls
    config.model.dtype = "bfloat16"
    config.model.remat = "dots"  # keep the matmul outputs, recompute the rest: 29 GiB a chip -> 12 on v5e-8

    config.mesh.preset = "dp"  # 124M parameters and AdamW (1.4 GiB) fit every chip whole

    config.train.steps = 600_000
    config.train.learning_rate = 6e-4
    config.train.warmup_steps = 2000
    config.train.end_learning_rate = 6e-5
    config.train.b2 = 0.95
    config.train.weight_decay = 0.1
    config.train.grad_accum_steps = 4

    config.eval.every = 2000
    config.eval.max_batches = 20
    config.log.every = 100
    return config
