"""nanoGPT's shakespeare-char CPU recipe trained in PyTorch, scored the way nanoGPT scores it and the way jaxlm does.

    python benchmarks/nanogpt_reference.py --data=../shared/data/tinyshakespeare.txt --seeds=0,1 \
        [--jaxlm_workdirs=runs/seed0,runs/seed1]

The reference figure jaxlm's `configs/shakespeare_char.py` is held to (1.886, `../shared/data/README.md`) is
nanoGPT's `estimate_loss`: the mean over 20 random batches of 12 x 64 validation characters. jaxlm reports the
loss over the whole validation split instead. This script trains the same recipe with `transformers`'
GPT2LMHeadModel (nanoGPT's architecture; its biases held at zero unless --bias, since nanoGPT's train.py defaults
to bias=False and the CPU command keeps it) and nanoGPT's own data sampling, learning-rate schedule and optimizer
groups, then prints both scores, so the two frameworks can be compared on one scale and the spread of
the 20-batch estimate can be seen. `--jaxlm_workdirs` scores jaxlm shakespeare_char runs with
the same code, and the last lines count how often one 20-batch estimate lands at or below 1.89. PyTorch via
`pip install torch==2.13.0` (the `hf` extra).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("data", "../shared/data/tinyshakespeare.txt", "The tiny-shakespeare text file.")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds; one run each.")
flags.DEFINE_integer("steps", 2000, "Training steps (nanoGPT's max_iters).")
flags.DEFINE_integer("estimates", 20, "Random-batch estimates of nanoGPT's kind to show the spread of.")
flags.DEFINE_bool("bias", False, "Biases in the Linear layers and LayerNorms (nanoGPT's train.py: bias=False).")
flags.DEFINE_list(
    "jaxlm_workdirs",
    [],
    "Workdirs of jaxlm shakespeare_char runs to score the same two ways "
    "(exported with `python -m jaxlm.export` and read by `transformers`).",
)

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
    x = torch.stack([data[i : i + CONTEXT] for i in starts])
    y = torch.stack([data[i + 1 : i + 1 + CONTEXT] for i in starts])
    return x, y


def _train(ids: np.ndarray, vocab: int, seed: int, steps: int, bias: bool):
    """(nanoGPT's recipe trained for `steps` on the first 90% of `ids`, training seconds)."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    train = torch.from_numpy(ids[: int(0.9 * len(ids))])
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_positions=CONTEXT,
            n_embd=WIDTH,
            n_layer=LAYERS,
            n_head=HEADS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
        )
    )
    if not bias:  # a bias fixed at zero computes what no bias does
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.data.zero_()
                p.requires_grad_(False)
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trained if p.dim() >= 2]  # nanoGPT: every matrix, embeddings included
    no_decay = [p for p in trained if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS
    )
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
    return model, time.perf_counter() - start


def _score(model, val_ids: np.ndarray, eval_seed: int, estimates: int) -> dict:
    """The loss of a GPT2LMHeadModel on the validation ids, both ways.

    `estimates`: that many of nanoGPT's 20-random-batch estimates (fresh batches each, from `eval_seed`);
    `whole_split`: every validation character, in back-to-back windows of CONTEXT as jaxlm's eval reads them.
    """
    import torch
    import torch.nn.functional as F

    val = torch.from_numpy(np.asarray(val_ids, np.int64))
    model.eval()
    with torch.no_grad():

        def loss_of(x, y):
            logits = model(x).logits
            return float(F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1)))

        eval_generator = torch.Generator().manual_seed(eval_seed)
        nanogpt_estimates = [
            statistics.mean(loss_of(*_random_batch(val, eval_generator, torch)) for _ in range(EVAL_ITERS))
            for _ in range(estimates)
        ]
        windows = (len(val) - 1) // CONTEXT
        x = val[: windows * CONTEXT].view(windows, CONTEXT)
        y = val[1 : windows * CONTEXT + 1].view(windows, CONTEXT)
        total = 0.0
        for i in range(0, windows, 256):
            total += loss_of(x[i : i + 256], y[i : i + 256]) * y[i : i + 256].numel()
    return {"whole_split": total / y.numel(), "estimates": nanogpt_estimates}


def _jaxlm_seed(workdir: str) -> int:
    """The seed of a jaxlm shakespeare_char run, after checking that the workdir holds one."""
    try:
        with open(f"{workdir}/config.json", encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        _fail(f"--jaxlm_workdirs: {workdir} holds no readable jaxlm config.json ({e})")
    if config["model"]["family"] != "gpt2" or config["data"]["tokenizer"]["kind"] != "char":
        _fail(
            f"--jaxlm_workdirs: {workdir} is a {config['model']['family']} run with a "
            f"{config['data']['tokenizer']['kind']} tokenizer; give configs/shakespeare_char.py runs"
        )
    return int(config["seed"])


def _jaxlm_run(workdir: str, text: str):
    """(the GPT2LMHeadModel and validation ids of a jaxlm run), through `python -m jaxlm.export`.

    The model and the ids come from the exported directory (`transformers`' own loaders), so the same
    scorer reads both frameworks' models.
    """
    import transformers
    from transformers import AutoTokenizer, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()  # no notes on loading weights or on the text's length
    transformers.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as out:
        export = subprocess.run(
            [sys.executable, "-m", "jaxlm.export", f"--workdir={workdir}", f"--out={out}"],
            capture_output=True,
            text=True,
        )
        if export.returncode != 0:
            _fail(f"--jaxlm_workdirs: exporting {workdir} failed: {export.stderr.strip()[-500:]}")
        model = GPT2LMHeadModel.from_pretrained(out)
        tokenizer = AutoTokenizer.from_pretrained(out)
        val_ids = tokenizer(text[int(0.9 * len(text)) :], add_special_tokens=False)["input_ids"]
    return model, val_ids


def _fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2 (the project's convention)."""
    print(f"nanogpt_reference: {message}", file=sys.stderr)
    sys.exit(2)


def _report(label: str, scores: dict, extra: str = "") -> None:
    e = scores["estimates"]
    print(
        f"{label} | whole validation split {scores['whole_split']:.4f} | nanoGPT's 20-batch estimate: "
        f"first {e[0]:.4f}, mean {statistics.mean(e):.4f}"
        + (f", sd {statistics.stdev(e):.4f}" if len(e) > 1 else "")
        + f", range {min(e):.4f}-{max(e):.4f} over {len(e)}"
        + extra
    )


def _pooled(label: str, estimates: list[float], threshold: float = 1.89) -> None:
    """How often one 20-batch estimate lands at or below `threshold`, over every run and draw."""
    below = sum(e <= threshold for e in estimates)
    print(
        f"{label}: {below} of {len(estimates)} 20-batch estimates at or below {threshold} "
        f"({below / len(estimates):.0%}); mean {statistics.mean(estimates):.4f}"
    )


def main(argv: list[str]) -> None:
    del argv
    text = open(flags.FLAGS.data, encoding="utf-8").read()
    chars = sorted(set(text))  # nanoGPT's character vocabulary (65 for this text)
    codepoints = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    lookup = np.zeros(int(codepoints.max()) + 1, np.int64)
    lookup[[ord(c) for c in chars]] = np.arange(len(chars))
    ids = lookup[codepoints]
    estimates = flags.FLAGS.estimates
    jaxlm_seeds = [_jaxlm_seed(workdir) for workdir in flags.FLAGS.jaxlm_workdirs]  # bad input before training
    pytorch, jaxlm = [], []
    print(
        f"nanoGPT recipe in PyTorch ({LAYERS} layers, {WIDTH} wide, context {CONTEXT}, batch {BATCH}, "
        f"{flags.FLAGS.steps} steps), vocabulary {len(chars)}"
    )
    for seed in map(int, flags.FLAGS.seeds):
        model, seconds = _train(ids, len(chars), seed, flags.FLAGS.steps, flags.FLAGS.bias)
        scores = _score(model, ids[int(0.9 * len(ids)) :], 1000 + seed, estimates)
        pytorch += scores["estimates"]
        _report(f"seed {seed}", scores, f" | trained in {seconds:.0f} s")
    for workdir, seed in zip(flags.FLAGS.jaxlm_workdirs, jaxlm_seeds):
        model, val_ids = _jaxlm_run(workdir, text)
        scores = _score(model, val_ids, 1000 + seed, estimates)  # the same draws as PyTorch's seed
        jaxlm += scores["estimates"]
        _report(f"jaxlm {workdir} (seed {seed})", scores)
    for label, pooled in (("PyTorch", pytorch), ("jaxlm", jaxlm)):
        if pooled:
            _pooled(label, pooled)


if __name__ == "__main__":
    app.run(main)
