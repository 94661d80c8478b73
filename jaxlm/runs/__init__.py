"""A run's workdir, read and written in one place: its layout, its lock, its checkpoints and their metadata.

Training writes runs through this package; export, generate and fine-tuning read them through
`reader.open_run`. It imports no training code. Import from its modules (`jaxlm.runs.reader.open_run`).
"""
