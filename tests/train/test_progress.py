"""Progress output: plain lines that parse back to the numbers logged, and a bar on a terminal."""

import io

import pytest

from jaxlm.train.progress import Progress, eval_line, format_duration, parse_line, step_line

RECORD = {
    "step": 25,
    "loss": 6.18061,
    "accuracy": 0.0812,
    "learning_rate": 1.44e-3,
    "grad_norm": 0.543,
    "tokens_per_second": 6519.4,
    "mfu": 0.4123,
}


def test_a_step_line_parses_back_to_its_numbers():
    line = step_line(25, 450, RECORD, seconds_per_step=0.2356)
    assert line.startswith("step     25/450 | loss 6.1806 | ")
    fields = parse_line(line)
    assert fields["kind"] == "step" and (fields["step"], fields["steps"]) == ("25", "450")
    assert float(fields["loss"]) == pytest.approx(RECORD["loss"], abs=1e-4)
    assert float(fields["lr"]) == pytest.approx(RECORD["learning_rate"], rel=1e-2)
    assert float(fields["tok/s"]) == pytest.approx(RECORD["tokens_per_second"], abs=1)
    assert float(fields["ms/step"]) == pytest.approx(235.6)
    assert fields["mfu"] == "41.2%" and fields["eta"] == "1:40"  # 425 steps of 0.2356 s


def test_unknown_mfu_prints_a_dash():
    fields = parse_line(step_line(1, 2, {**RECORD, "mfu": None}, 0.1))
    assert fields["mfu"] == "-"


def test_an_eval_line_parses_back():
    fields = parse_line(eval_line(30, 30, {"val_loss": 3.8652, "val_perplexity": 47.71, "val_accuracy": 0.271}))
    assert fields == {
        "kind": "eval",
        "step": "30",
        "steps": "30",
        "val_loss": "3.8652",
        "val_ppl": "47.71",
        "val_acc": "0.271",
    }


def test_format_duration():
    assert (format_duration(59), format_duration(61), format_duration(3725)) == ("0:59", "1:01", "1:02:05")


def test_without_a_terminal_every_logged_step_is_one_plain_line():
    out = io.StringIO()
    progress = Progress(450, 0, stream=out)  # StringIO is no terminal
    progress.step(25, RECORD, 0.2)
    progress.write("eval     25/450 | val_loss 3.0000 | val_ppl 20.09 | val_acc 0.300")
    progress.step(50, {**RECORD, "step": 50}, 0.2)
    progress.close()
    lines = out.getvalue().splitlines()
    assert [parse_line(line)["step"] for line in lines] == ["25", "25", "50"]
    assert [parse_line(line)["kind"] for line in lines] == ["step", "eval", "step"]


def test_on_a_terminal_a_bar_shows_step_loss_lr_throughput_mfu_and_eta():
    out = io.StringIO()
    progress = Progress(450, 100, stream=out, tty=True)
    progress.step(125, RECORD, 0.2)
    progress.write("save  | step 125 -> somewhere")
    progress.close()
    text = out.getvalue()
    bar = text.split("\r")[-1]
    assert bar.startswith("step 125/450 |") and "28%" in bar
    for shown in ("loss 6.1806", "lr 1.44e-03", "6,519 tok/s", "mfu 41.2%", "eta 1:05"):
        assert shown in bar, (shown, bar)
    assert "save  | step 125 -> somewhere\n" in text
    assert not any(line.startswith("step    125/") for line in text.splitlines())  # no plain line


def test_a_disabled_progress_prints_nothing():
    out = io.StringIO()
    progress = Progress(10, 0, stream=out, tty=True, enabled=False)
    progress.step(5, RECORD, 0.1)
    progress.write("eval")
    progress.close()
    assert out.getvalue() == ""
