"""Using a trained model: KV-cache decoding for causal models (`decode`), fill-mask for bert (`fill_mask`).

`python -m jaxlm.generate` is the command line. Import from the modules (`jaxlm.generate.decode.generate`).
"""
