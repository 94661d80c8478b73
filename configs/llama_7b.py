"""LLaMA-2 7B: 32 layers, 4096 wide, 32 heads, SwiGLU 11008, vocabulary 32000, context 4096.

Needs a real corpus: --config.data.path=GLOB (and a pod slice).

Fits v5p-128 (checked ahead of time: python -m jaxlm.aot --config=configs/llama_7b.py --topology=v5p-128):
mesh fsdp=64, remat none, splash attention, bfloat16: 77.0 GiB of 95 GiB HBM per chip.
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.seq_len = 4096
    config.data.batch_size = 1024  # 4M tokens a step (LLaMA 2)
    config.data.val_fraction = 0.0005
    config.data.tokenizer.vocab_size = 32000

    config.model.family = "llama"
    config.model.num_layers = 32
    config.model.width = 4096
    config.model.num_heads = 32
    config.model.mlp_dim = 11008
    config.model.dtype = "bfloat16"
    config.model.remat = "none"  # splash holds no L x L scores, so nothing need be recomputed

    config.mesh.preset = "fsdp"  # parameters and AdamW split 64 ways: 1.2 GiB a chip

    config.train.steps = 500_000  # 2T tokens
    config.train.learning_rate = 3e-4
    config.train.warmup_steps = 2000
    config.train.end_learning_rate = 3e-5
    config.train.b2 = 0.95
    config.train.eps = 1e-5
    config.train.weight_decay = 0.1
    config.train.grad_accum_steps = 8  # 128 rows a micro-batch: two 4,096-token rows per chip on v5p-128

    config.eval.every = 5000
    config.eval.max_batches = 20
    config.log.every = 100
    return config
