"""nanoGPT's shakespeare-char CPU recipe, so the two compare on the same text.

    python run_pretrain.py --config=configs/shakespeare_char.py \
        --config.data.path=../shared/data/tinyshakespeare.txt
"""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.data.source = "text"
    config.data.path = ""  # the tiny-shakespeare text file: pass --config.data.path=...
    config.data.tokenizer.kind = "char"  # every character, newlines included, is one token
    config.data.seq_len = 64
    config.data.batch_size = 12
    config.data.val_fraction = 0.1  # first 90% of the text trains, last 10% validates

    config.model.family = "gpt2"
    config.model.num_layers = 4
    config.model.num_heads = 4
    config.model.width = 128
    config.model.dropout = 0.0
    config.model.biases = "none"  # nanoGPT's train.py has bias=False, and the CPU command keeps it
    config.model.scan_unroll = 4  # all four blocks unrolled: ~2x faster on the CPU, compile time is no issue at 4

    config.mesh.cpu_devices = 2  # one device per core of a 2-core CPU: data parallel beats one device's threads

    config.train.steps = 2000
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 100
    config.train.decay = "cosine"
    config.train.end_learning_rate = 1e-4
    config.train.b2 = 0.99
    config.train.weight_decay = 0.1
    config.train.decay_embeddings = True  # nanoGPT decays every matrix, embeddings included
    config.train.clip_norm = 1.0

    config.eval.every = 500
    config.eval.max_batches = 0  # the whole validation split
    config.log.every = 100
    config.sample.prompt = "ROMEO:\n"
    config.sample.num_tokens = 56
    return config
