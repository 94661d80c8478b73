"""A small BERT trained with masked LM on the built-in corpus, ending in a fill-mask demo."""

from jaxlm.config import base_config


def get_config():
    config = base_config()
    config.model.family = "bert"
    config.model.num_layers = 4
    config.model.width = 256
    config.model.num_heads = 4
    config.data.tokenizer.model_type = "unigram"
    config.train.learning_rate = 1e-3  # post-LN BERT wants a gentler peak than the pre-LN default
    config.train.warmup_steps = 100
    config.train.end_learning_rate = 1e-4
    config.train.b2 = 0.98
    config.train.weight_decay = 0.01
    config.sample.prompt = "The default value of the argument is None, and the function returns a list."
    return config
