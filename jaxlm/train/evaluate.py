"""Validation: loss, perplexity and token accuracy over the fixed validation batches."""

from __future__ import annotations

import math

import jax


def _collectives_share_a_thread_pool() -> bool:
    """Whether this process drives several CPU devices (mesh.cpu_devices > 1), whose all-reduces meet in process.

    XLA:CPU runs every device's part of a program on one shared thread pool. Eval steps depend only on the
    parameters, so dispatched back to back several start at once; each part that reaches the all-reduce
    holds a pool thread while it waits for its partners, and with as many programs in flight as threads
    the partners never get one: a deadlock that XLA ends by aborting after 40 s. (Train steps are chained
    by their state, so they never overlap.)
    """
    return jax.local_devices()[0].platform == "cpu" and jax.local_device_count() > 1


def evaluate(eval_step, params: dict, batches: list[dict[str, jax.Array]]) -> dict[str, float]:
    """Loss, perplexity and token accuracy over the validation batches (summed, then divided), and
    next-sentence loss and accuracy for sentence-pair batches."""
    totals = None
    one_at_a_time = _collectives_share_a_thread_pool()
    for batch in batches:
        sums = eval_step(params, batch)
        if one_at_a_time:
            jax.block_until_ready(sums)
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    totals = jax.device_get(totals)
    weight = max(float(totals["weight_sum"]), 1.0)
    loss = float(totals["loss_sum"]) / weight
    val = {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 50.0)),
        "val_accuracy": float(totals["correct_sum"]) / weight,
    }
    if "next_sentence_weight_sum" in totals:  # sentence-pair batches: BERT's next-sentence prediction
        pairs = max(float(totals["next_sentence_weight_sum"]), 1.0)
        val["val_next_sentence_loss"] = float(totals["next_sentence_loss_sum"]) / pairs
        val["val_next_sentence_accuracy"] = float(totals["next_sentence_correct_sum"]) / pairs
    return val
