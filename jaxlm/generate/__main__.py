"""python -m jaxlm.generate: continue prompts with a trained causal run, or fill the masks of a bert run.

    python -m jaxlm.generate --workdir=runs/default --prompt="The " --prompt="A class" --top_p=0.95
    python -m jaxlm.generate --workdir=runs/bert_tiny --prompt="The <mask> statement"   # or [MASK]

Reads the newest checkpoint (or --step=N) with the tokenizer it was trained with. Exit status 2 for bad
input (a run that is not there, a flag out of range, a bert prompt with no mask), one line on stderr.
"""

from __future__ import annotations

import sys

from absl import flags

from jaxlm import cli


def _flags() -> flags.FlagValues:
    fv = cli.command_flags()
    flags.DEFINE_string(
        "workdir", None, "A jaxlm run (its --workdir) or its checkpoints directory.", flag_values=fv, required=True
    )
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest).", flag_values=fv)
    flags.DEFINE_enum(
        "params",
        "raw",
        ["raw", "ema"],
        "raw: the parameters as trained; ema: their average (runs trained with train.ema_decay > 0).",
        flag_values=fv,
    )
    flags.DEFINE_multi_string(
        "prompt",
        [""],
        "Text to continue (repeat for a batch); bert: text with <mask> or [MASK] where tokens are to be filled.",
        flag_values=fv,
    )
    flags.DEFINE_integer("num_tokens", 64, "New tokens per prompt at most.", flag_values=fv, lower_bound=1)
    flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 = greedy.", flag_values=fv, lower_bound=0)
    flags.DEFINE_integer("top_k", 0, "Sample from the k likeliest tokens (0 = all).", flag_values=fv, lower_bound=0)
    flags.DEFINE_float(
        "top_p",
        1.0,
        "Sample from the smallest set of tokens with this probability mass.",
        flag_values=fv,
        lower_bound=0,
        upper_bound=1,
    )
    flags.DEFINE_integer("seed", 0, "Seeds the sampling.", flag_values=fv)
    return fv


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line on `argv` (without the program name); returns the exit status."""
    fv = _flags()
    cli.parse(fv, ["jaxlm.generate", *argv], usage=__doc__)
    if fv.top_p == 0:
        cli.fail("--top_p=0 keeps no token; give 0 < --top_p <= 1")
    from jaxlm.generate.decode import generate, inference_graphdef  # jax loads after the flags are good
    from jaxlm.generate.fill_mask import MASK_SPELLINGS, encode_masked, fill_lines
    from jaxlm.runs.checkpoint import CheckpointError
    from jaxlm.runs.reader import open_run

    try:
        run = open_run(fv.workdir, fv.step, params=fv.params)
    except CheckpointError as error:
        cli.fail(str(error))
    tokenizer, model_cfg = run.tokenizer, run.model_cfg
    if model_cfg.num_labels:
        cli.fail(
            f"{fv.workdir} is a classifier (finetune.task={run.config.finetune.task!r}), which labels text rather "
            "than writing it; export it with python -m jaxlm.export and load it as AutoModelForSequenceClassification"
        )
    if tokenizer is None:
        cli.fail(f"{fv.workdir}: the checkpoint carries no tokenizer, and none is in its tokenizer/ folder")
    graphdef = inference_graphdef(model_cfg)
    if not model_cfg.causal:
        for text in fv.prompt:
            if not any(spelling in text for spelling in MASK_SPELLINGS):
                cli.fail(
                    f"--prompt={text!r}: no {' or '.join(MASK_SPELLINGS)} to fill; a bert run fills masks, "
                    "e.g. --prompt='The <mask> statement'"
                )
        for text in fv.prompt:
            print(text)
            print(
                "\n".join(
                    fill_lines(
                        graphdef, run.params, tokenizer, encode_masked(tokenizer, text, model_cfg.max_len), top_k=5
                    )
                )
            )
        return 0
    window = model_cfg.max_len
    encoded = []
    for text in fv.prompt:
        ids = tokenizer.encode(text) or [tokenizer.eos_id]  # an empty prompt starts after an end of text
        if len(ids) > window - 1:
            print(
                f"note: --prompt={text[:40]!r}...: {len(ids)} tokens, more than the model's window of {window} "
                f"leaves room for; continuing its last {window - 1}",
                file=sys.stderr,
            )
        encoded.append(ids[-(window - 1) :])
    room = window - max(len(ids) for ids in encoded)
    if fv.num_tokens > room:
        print(
            f"note: --num_tokens={fv.num_tokens}: the model's window of {window} tokens leaves room for "
            f"{room} after the longest prompt; generating at most that",
            file=sys.stderr,
        )
    outputs = generate(
        graphdef,
        run.params,
        encoded,
        max_new_tokens=fv.num_tokens,
        max_len=window,
        temperature=fv.temperature,
        top_k=fv.top_k,
        top_p=fv.top_p,
        seed=fv.seed,
        eos_id=tokenizer.eos_id,
    )
    for text, new_ids in zip(fv.prompt, outputs):
        print(f"--- step {run.step} | {text!r}\n{text}{tokenizer.decode(new_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
