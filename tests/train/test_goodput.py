"""The clock behind the `time |` line: each stretch of wall time charged to one category, and the line and record."""

import time

import pytest

from jaxlm.train.goodput import CATEGORIES, Clock


def test_the_clock_charges_each_stretch_to_one_category():
    clock = Clock()
    time.sleep(0.06)
    clock.charge("startup")
    time.sleep(0.1)
    clock.charge("steps")
    clock.charge("data")  # next to nothing: left out of the line
    assert clock.total == pytest.approx(sum(clock.seconds.values()))
    assert clock.seconds["steps"] >= 0.1 and clock.seconds["startup"] >= 0.06
    assert clock.goodput == pytest.approx(clock.seconds["steps"] / clock.total)
    record = clock.record(7)
    assert record["step"] == 7 and record["goodput"] == clock.goodput
    assert {f"time_{name}_s" for name in CATEGORIES} | {"step", "goodput", "time_total_s"} == set(record)
    line = clock.line()
    assert line.startswith(f"time  | {clock.total:.1f} s: steps {clock.seconds['steps']:.1f} s (")
    assert "% goodput), startup " in line and "data" not in line


def test_long_times_read_as_minutes():
    clock = Clock()
    clock.seconds.update(steps=3600.0, data=125.0)
    assert clock.line() == "time  | 1:02:05: steps 1:00:00 (97% goodput), data 2:05"
