"""Tests for jaxlm/data/batches.py: per-host rows, exact resume, iterator state and prefetch."""

import json
import threading

import numpy as np
import pytest

from jaxlm.config import base_config, data_arguments
from jaxlm.data import pipeline
from jaxlm.data.batches import host_share
from jaxlm.data.errors import DataError


def build_data(config, workdir=None):
    """The data pipeline as a run builds it from its whole config (caches in `workdir`)."""
    return pipeline.build_data(config.data, **data_arguments(config), cache_dir=workdir)


FIELDS = ("inputs", "targets", "weights", "positions", "segment_ids")


def _config(family="llama", batch_size=8, **data):
    config = base_config()
    config.model.family = family
    config.data.seq_len, config.data.batch_size = 32, batch_size
    config.data.tokenizer.vocab_size = 400
    config.data.update(data)
    config.eval.max_batches = 4
    return config


@pytest.fixture(scope="module", params=["llama", "bert"])
def data(request):
    return build_data(_config(request.param), workdir=None)


def _equal(a, b):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("hosts", [1, 2, 4, 8])
def test_host_batches_are_the_global_batch_split_in_order(data, hosts):
    train = data.train
    # Steps within the first epoch, across the epoch boundary (mid-batch) and far beyond it.
    boundary = train.num_rows // 8
    for step in (0, 1, boundary, boundary + 1, 10 * boundary + 3):
        full = train.batch(step)
        parts = [train.host_batch(step, i, hosts) for i in range(hosts)]
        for part in parts:
            assert all(v.shape == (8 // hosts, 32) for v in part.values())
        _equal({k: np.concatenate([p[k] for p in parts]) for k in FIELDS}, full)


def test_hosts_read_disjoint_rows_that_cover_each_epoch(data, monkeypatch):
    # Record which rows of the stream each host asks for: a host gathers only its own rows.
    train = data.train
    read = []
    gather = train.stream.rows
    monkeypatch.setattr(train.stream, "rows", lambda rows_R, **kw: read.extend(rows_R.tolist()) or gather(rows_R, **kw))
    steps = train.num_rows // 8  # the whole batches of the first epoch
    hosts = {}
    for i in range(4):
        read.clear()
        for step in range(steps):
            train.host_batch(step, i, 4)
        hosts[i] = list(read)
        assert len(hosts[i]) == steps * 2 and len(set(hosts[i])) == len(hosts[i])
    for i in range(4):
        for j in range(i + 1, 4):
            assert not set(hosts[i]) & set(hosts[j]), f"hosts {i} and {j} share a row"
    read.clear()
    for step in range(steps):
        train.batch(step)
    assert set().union(*map(set, hosts.values())) == set(read)
    assert set(read) <= set(range(train.num_rows)) and len(read) >= train.num_rows - 7


def test_batch_size_must_divide_among_hosts(data):
    with pytest.raises(DataError, match=r"config.data.batch_size=8: not divisible by the 3 processes"):
        data.train.host_batch(0, 0, 3)
    with pytest.raises(DataError, match="batch_size=8"):
        data.train.iterate(0, 0, 3)
    with pytest.raises(ValueError, match="process_index=2"):
        data.train.host_batch(0, 2, 2)


def test_validation_rows_per_host(data):
    assert len(data.val_batches) == 4
    for hosts in (2, 4):
        per_host = [data.host_val_batches(i, hosts) for i in range(hosts)]
        for b, batch in enumerate(data.val_batches):
            _equal({k: np.concatenate([h[b][k] for h in per_host]) for k in FIELDS}, batch)
    _equal(host_share(data.val_batches[0], 1, 2), {k: v[4:] for k, v in data.val_batches[0].items()})


def test_exact_resume_mid_epoch(data):
    # An uninterrupted run's batches against one stopped after step k, its state saved as JSON, and
    # continued by a freshly built pipeline.
    family = "bert" if data.train._masker else "llama"
    k = data.train.num_rows // 8 // 2
    uninterrupted = data.train.iterate(0, 1, 2, prefetch=2)
    before = [next(uninterrupted) for _ in range(k)]
    after = [next(uninterrupted) for _ in range(5)]
    uninterrupted.close()
    saved = json.dumps(data.train.state(k))
    assert len(saved) < 400

    fresh = build_data(_config(family), workdir=None)
    step = fresh.train.restore(json.loads(saved))
    assert step == k
    resumed = fresh.train.iterate(step, 1, 2, prefetch=0)
    for want in after:
        _equal(next(resumed), want)
    _equal(before[-1], fresh.train.host_batch(k - 1, 1, 2))


@pytest.mark.parametrize(
    "change, named",
    [
        ({"batch_size": 16}, "batch_size 8 -> 16"),
        ({"seq_len": 64}, "seq_len 32 -> 64"),
        ({"tokenizer": {"vocab_size": 420}}, "tokenizer "),
        ({"max_documents": 40}, "corpus "),
        ({"val_fraction": 0.1}, "val_fraction 0.05 -> 0.1"),
    ],
)
def test_restore_refuses_other_data(change, named):
    state = build_data(_config(), workdir=None).train.state(7)
    config = _config()
    for key, value in change.items():
        if isinstance(value, dict):
            config.data[key].update(value)
        else:
            config.data[key] = value
    other = build_data(config, workdir=None)
    assert other.fingerprint != state["fingerprint"]
    with pytest.raises(DataError, match="checkpoint's data state does not match") as error:
        other.train.restore(state)
    assert named in str(error.value)
    assert "start a fresh workdir" in str(error.value)


def test_seed_changes_the_fingerprint_and_the_batches():
    first, again = build_data(_config(), workdir=None), build_data(_config(), workdir=None)
    assert first.fingerprint == again.fingerprint == first.train.state(0)["fingerprint"]
    assert len(first.fingerprint) == 16
    reseeded = _config()
    reseeded.seed = 1
    other = build_data(reseeded, workdir=None)
    assert other.fingerprint != first.fingerprint
    assert not np.array_equal(other.train.batch(0)["inputs"], first.train.batch(0)["inputs"])
    with pytest.raises(DataError, match="seed 0 -> 1"):
        other.train.restore(first.train.state(3))


def test_prefetch_yields_the_same_batches_and_stops(data):
    direct = [data.train.host_batch(step, 0, 2) for step in range(3, 9)]
    before = threading.active_count()
    iterator = data.train.iterate(3, 0, 2, prefetch=3)
    for want in direct:
        _equal(next(iterator), want)
    assert threading.active_count() == before + 1
    iterator.close()
    assert threading.active_count() == before


def test_prefetch_raises_the_workers_error(data, monkeypatch):
    calls = []

    def failing(step, process_index, process_count):
        calls.append(step)
        if step == 2:
            raise RuntimeError("disk went away")
        return {"step": step}

    monkeypatch.setattr(data.train, "host_batch", failing)
    iterator = data.train.iterate(0, prefetch=2)
    assert [next(iterator)["step"] for _ in range(2)] == [0, 1]
    with pytest.raises(RuntimeError, match="disk went away"):
        next(iterator)
