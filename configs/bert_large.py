"""BERT large (335M): 24 layers, 1024 wide, 16 heads, sequence 512, masked LM (as RoBERTa: no NSP).

Needs a real corpus: --config.data.path=GLOB (and accelerators).

Fits v5e-8 (checked ahead of time: python -m jaxlm.aot --config=configs/bert_large.py --topology=v5e-8):
mesh fsdp=8, remat full, bfloat16: 8.2 GiB of 16 GiB HBM per chip.
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.seq_len = 512
    config.data.batch_size = 256
    config.data.val_fraction = 0.005
    config.data.tokenizer.model_type = "unigram"
    config.data.tokenizer.vocab_size = 30522

    config.model.family = "bert"
    config.model.num_layers = 24
    config.model.width = 1024
    config.model.num_heads = 16
    config.model.dropout = 0.1
    config.model.dtype = "bfloat16"
    config.model.remat = "full"  # keep only each block's input; recompute the block in the backward pass

    config.mesh.preset = "fsdp"  # parameters and AdamW split over every chip

    config.train.steps = 1_000_000
    config.train.learning_rate = 1e-4
    config.train.warmup_steps = 10_000
    config.train.decay = "linear"
    config.train.end_learning_rate = 0.0
    config.train.b2 = 0.999
    config.train.eps = 1e-6
    config.train.weight_decay = 0.01

    config.eval.every = 10_000
    config.eval.max_batches = 20
    config.log.every = 100
    config.sample.prompt = "The capital of France is Paris, and it is known for its museums."
    return config
