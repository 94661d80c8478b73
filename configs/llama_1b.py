"""A 1.1B LLaMA-style model (TinyLlama's shape): 22 layers, 2048 wide, 32 heads, 4 KV heads, context 2048.

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v5p-64 (checked ahead of time: python -m jaxlm.aot --config=configs/llama_1b.py --topology=v5p-64):
mesh fsdp=32, remat none, splash attention, bfloat16: 61.6 GiB of 95 GiB HBM per chip.
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.seq_len = 2048
    config.data.batch_size = 512  # ~1M tokens a step
    config.data.val_fraction = 0.001
    config.data.tokenizer.vocab_size = 32000

    config.model.family = "llama"
    config.model.num_layers = 22
    config.model.width = 2048
    config.model.num_heads = 32
    config.model.num_kv_heads = 4
    config.model.mlp_dim = 5632
    config.model.dtype = "bfloat16"
    config.model.remat = "none"  # with splash attention nothing need be recomputed: 62 GiB a chip on v5p-64

    config.mesh.preset = "fsdp"  # parameters and AdamW split over all chips (0.5 GiB each on v5p-64)

    config.train.steps = 1_000_000
    config.train.learning_rate = 4e-4
    config.train.warmup_steps = 2000
    config.train.end_learning_rate = 4e-5
    config.train.b2 = 0.95
    config.train.weight_decay = 0.1
    config.train.grad_accum_steps = 2  # 256 rows a micro-batch: 8 a chip on v5p-64

    config.eval.every = 5000
    config.eval.max_batches = 20
    config.log.every = 100
    return config
