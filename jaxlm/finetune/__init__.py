"""Fine-tuning and evaluation of pretrained runs: tasks, heads and metrics."""
