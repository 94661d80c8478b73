"""How a run shows its progress: a live bar on a terminal, plain lines anywhere else.

The plain lines (CI, log files, notebooks) are one `key value` field per ` | ` so scripts can read
them back with `parse_line`; the tests do.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    """1:05 or 2:01:05."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_mfu(mfu: float | None) -> str:
    """41.2%, or - when the devices' peak is unknown (a CPU)."""
    return "-" if mfu is None else f"{mfu * 100:.1f}%"


def step_line(step: int, steps: int, record: dict, seconds_per_step: float) -> str:
    """The periodic progress line of a training step (record: a metrics.jsonl record)."""
    pairs = (
        f"nsp_loss {record['next_sentence_loss']:.4f} | nsp_acc {record['next_sentence_accuracy']:.3f} | "
        if "next_sentence_loss" in record
        else ""
    )
    return (
        f"step {step:>6}/{steps} | loss {record['loss']:.4f} | acc {record['accuracy']:.3f} | {pairs}"
        f"lr {record['learning_rate']:.2e} | gnorm {record['grad_norm']:.2f} | "
        + (f"scale {record['loss_scale']:.0f} | " if "loss_scale" in record else "")
        + f"{record['tokens_per_second']:,.0f} tok/s | mfu {format_mfu(record.get('mfu'))} | "
        f"{seconds_per_step * 1e3:.1f} ms/step | eta {format_duration(seconds_per_step * (steps - step))}"
    )


def eval_line(step: int, steps: int, val: dict) -> str:
    """The line an evaluation prints."""
    return (
        f"eval {step:>6}/{steps} | val_loss {val['val_loss']:.4f} | "
        f"val_ppl {val['val_perplexity']:.2f} | val_acc {val['val_accuracy']:.3f}"
        + (
            f" | val_nsp_loss {val['val_next_sentence_loss']:.4f} | val_nsp_acc {val['val_next_sentence_accuracy']:.3f}"
            if "val_next_sentence_loss" in val
            else ""
        )
        + (
            f" | ema_loss {val['val_loss_ema']:.4f} | ema_acc {val['val_accuracy_ema']:.3f}"
            if "val_loss_ema" in val
            else ""
        )
    )


def parse_line(line: str) -> dict[str, str]:
    """The fields of a `step` or `eval` line: {"kind": "step", "step": "25", "steps": "450", "loss": ...}.

    A field is `key value` ("loss 3.98"), or `value unit` when it starts with a number ("6,519 tok/s").
    """
    head, *fields = line.strip().split(" | ")
    kind, count = head.split()
    step, steps = count.split("/")
    parsed = {"kind": kind, "step": step, "steps": steps}
    for field in fields:
        first, rest = field.split(" ", 1)
        if first[0].isdigit() or first[0] in "-.":
            parsed[rest] = first.replace(",", "")
        else:
            parsed[first] = rest
    return parsed


class Progress:
    """Step progress for people: a tqdm bar when the stream is a terminal, else `step_line`s.

    Other lines (evaluations, saves) go through `write`, which prints them above the bar.
    """

    def __init__(
        self,
        steps: int,
        start_step: int,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        enabled: bool = True,
    ):
        self.steps, self.enabled = steps, enabled
        self.stream = stream or sys.stdout
        tty = self.stream.isatty() if tty is None else tty
        self._bar = None
        if enabled and tty:
            self._bar = tqdm(
                total=steps,
                initial=start_step,
                file=self.stream,
                dynamic_ncols=True,
                bar_format="step {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}%{postfix}",
            )

    def step(self, step: int, record: dict, seconds_per_step: float) -> None:
        """Shows a logged step's metrics (its metrics.jsonl record)."""
        if not self.enabled:
            return
        if self._bar is None:
            self.write(step_line(step, self.steps, record, seconds_per_step))
            return
        self._bar.set_postfix_str(
            f"loss {record['loss']:.4f} | lr {record['learning_rate']:.2e} | "
            f"{record['tokens_per_second']:,.0f} tok/s | mfu {format_mfu(record.get('mfu'))} | "
            f"eta {format_duration(seconds_per_step * (self.steps - step))}",
            refresh=False,
        )
        self._bar.update(step - self._bar.n)

    def write(self, line: str) -> None:
        """Prints a line (above the bar, when there is one)."""
        if not self.enabled:
            return
        if self._bar is None:
            print(line, file=self.stream, flush=True)
        else:
            self._bar.write(line, file=self.stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
