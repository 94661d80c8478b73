"""Fine-tune a pretrained encoder to label fortunes by topic (../shared/data/fortunes: 2,480 training and 619
validation texts, four labels). Start it from a run: --config.finetune.init_from=runs/bert_tiny."""

import os

from jaxlm.config import base_config

FORTUNES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "fortunes")


def get_config():
    config = base_config()
    config.finetune.task = "classify"
    config.model.family = "bert"  # with init_from, the pretrained run's model section replaces this one
    config.model.dropout = 0.1
    config.data.source = "jsonl"
    config.data.path = os.path.normpath(os.path.join(FORTUNES, "train.jsonl"))
    config.data.val_path = os.path.normpath(os.path.join(FORTUNES, "validation.jsonl"))
    config.data.batch_size = 32
    config.train.steps = 240  # about 3 epochs of 2,480 texts
    config.train.warmup_steps = 24
    config.train.learning_rate = 1e-4
    config.train.end_learning_rate = 0.0
    config.train.decay = "linear"
    config.train.weight_decay = 0.01
    config.eval.every = 40
    config.eval.max_batches = 0  # every validation text
    config.log.every = 20
    config.checkpoint.every = 80
    return config
