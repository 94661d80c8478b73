"""Flax NNX modules for the Transformer: pure functions of parameters and inputs.

Import what you need from its modules (`jaxlm.model.transformer.Transformer`,
`jaxlm.model.config.ModelConfig`): this file imports nothing, so reading the model's choices
(`jaxlm.model.config`) costs no JAX import. The model knows nothing of data, optimizers, files or
meshes; every parameter carries logical axis names (`axes`) that the trainer maps to mesh axes.
"""
