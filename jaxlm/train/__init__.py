"""Training: the optimizer, the loss, the jitted steps and their shardings, resuming, and the loop.

Puts the model, the data pipeline and the mesh together; reads and writes its workdir through
`jaxlm.runs`. `loop.run(config, workdir)` is what `run_pretrain.py` calls. Import from the modules.
"""
