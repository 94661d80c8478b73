"""Loss curves of a run: `curves` draws them, `python -m jaxlm.plot WORKDIR` writes them as a PNG."""
