"""nanoGPT's shakespeare-char CPU recipe trained in PyTorch, scored the way nanoGPT scores it and the way jaxlm does.

    python benchmarks/nanogpt_reference.py --data=../shared/data/tinyshakespeare.txt --seeds=0,1

The reference figure jaxlm's `configs/shakespeare_char.py` is held to (1.886, `../shared/data/README.md`) is
nanoGPT's `estimate_loss`: the mean over 20 random batches of 12 x 64 validation characters. jaxlm reports the
loss over the whole validation split instead. This script trains the same recipe with `transformers`'
GPT2LMHeadModel (nanoGPT's architecture; its biases held at zero unless --bias, since nanoGPT's train.py defaults
to bias=False and the CPU command keeps it) and nanoGPT's own data sampling, learning-rate schedule and optimizer
groups, then prints both scores, so the two frameworks can be compared on one scale and the spread of
the 20-batch estimate can be seen. PyTorch via `pip install torch==2.13.0` (the `hf` extra).
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("data", "../shared/data/tinyshakespeare.txt", "The tiny-shakespeare text file.")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds; one run each.")
flags.DEFINE_integer("steps", 2000, "Training steps (nanoGPT's max_iters).")
flags.DEFINE_integer("estimates", 20, "Random-batch estimates of nanoGPT's kind to show the spread of.")
flags.DEFINE_bool("bias", False, "Biases in the Linear layers and LayerNorms (nanoGPT's train.py: bias=False).")

LAYERS, HEADS, WIDTH, CONTEXT, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, BETAS, WEIGHT_DECAY, CLIP = 1e-3, 1e-4, 100, (0.9, 0.99), 0.1, 1.0
EVAL_ITERS = 20  # the CPU command's --eval_iters


def _lr(step: int, steps: int) -> float:
    """nanoGPT's get_lr: linear warmup, cosine decay to MIN_LR at the last step."""
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    ratio = (step - WARMUP) / (steps - WARMUP)
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (LR - MIN_LR)


def _random_batch(data, generator, torch):
    """nanoGPT's get_batch: BATCH windows at uniformly random offsets."""
    starts = torch.randint(len(data) - CONTEXT, (BATCH,), generator=generator)
    x = torch.stack([data[i:i + CONTEXT] for i in starts])
    y = torch.stack([data[i + 1:i + 1 + CONTEXT] for i in starts])
    return x, y


def _train_and_score(ids: np.ndarray, vocab: int, seed: int, steps: int, estimates: int, bias: bool) -> dict:
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    split = int(0.9 * len(ids))
    train, val = torch.from_numpy(ids[:split]), torch.from_numpy(ids[split:])
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=CONTEXT, n_embd=WIDTH, n_layer=LAYERS,
                                       n_head=HEADS, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                       bos_token_id=None, eos_token_id=None))
    if not bias:  # a bias fixed at zero computes what no bias does
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.data.zero_()
                p.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]  # nanoGPT: every matrix, embeddings included
    no_decay = [p for p in trained if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps)
        x, y = _random_batch(train, generator, torch)
        loss = F.cross_entropy(model(x).logits.view(-1, vocab), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, CLIP)
        optimizer.step()
    seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        def loss_of(x, y):
            return float(F.cross_entropy(model(x).logits.view(-1, vocab), y.view(-1)))

        # nanoGPT's estimate_loss, repeated with fresh random batches to show its spread.
        eval_generator = torch.Generator().manual_seed(1000 + seed)
        nanogpt_estimates = [statistics.mean(loss_of(*_random_batch(val, eval_generator, torch))
                                             for _ in range(EVAL_ITERS)) for _ in range(estimates)]
        # The whole split in back-to-back windows, as jaxlm's eval reads it.
        windows = (len(val) - 1) // CONTEXT
        x = val[:windows * CONTEXT].view(windows, CONTEXT)
        y = val[1:windows * CONTEXT + 1].view(windows, CONTEXT)
        total = 0.0
        for i in range(0, windows, 256):
            total += loss_of(x[i:i + 256], y[i:i + 256]) * y[i:i + 256].numel()
        whole = total / y.numel()
    return {"seed": seed, "whole_split": whole, "estimates": nanogpt_estimates, "train_s": seconds}


def main(argv: list[str]) -> None:
    del argv
    text = open(flags.FLAGS.data, encoding="utf-8").read()
    chars = sorted(set(text))  # nanoGPT's character vocabulary (65 for this text)
    codepoints = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    lookup = np.zeros(int(codepoints.max()) + 1, np.int64)
    lookup[[ord(c) for c in chars]] = np.arange(len(chars))
    ids = lookup[codepoints]
    print(f"nanoGPT recipe in PyTorch ({LAYERS} layers, {WIDTH} wide, context {CONTEXT}, batch {BATCH}, "
          f"{flags.FLAGS.steps} steps), vocabulary {len(chars)}")
    for seed in map(int, flags.FLAGS.seeds):
        r = _train_and_score(ids, len(chars), seed, flags.FLAGS.steps, flags.FLAGS.estimates, flags.FLAGS.bias)
        e = r["estimates"]
        print(f"seed {seed} | whole validation split {r['whole_split']:.4f} | nanoGPT's 20-batch estimate: "
              f"first {e[0]:.4f}, mean {statistics.mean(e):.4f}, sd {statistics.stdev(e):.4f}, "
              f"range {min(e):.4f}-{max(e):.4f} over {len(e)} | trained in {r['train_s']:.0f} s")


if __name__ == "__main__":
    app.run(main)
