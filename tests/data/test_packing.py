"""Tests for jaxlm/data/packing.py against a naive per-token reference and the packing invariants."""

import numpy as np
import pytest

from jaxlm.data.packing import PAD_DOC, FramedStream, num_rows, row_fields

BOS, EOS, PAD = 2, 3, 0


def _random_docs(rng, count, max_len):
    return [rng.integers(5, 100, size=rng.integers(0, max_len)) for _ in range(count)]


def _stream(docs, objective, cut_head=False, cut_tail=False):
    content = np.concatenate([np.asarray(doc, np.int32) for doc in docs] + [np.zeros(0, np.int32)])
    return FramedStream(
        content,
        [len(doc) for doc in docs],
        objective=objective,
        bos_id=BOS,
        eos_id=EOS,
        cut_head=cut_head,
        cut_tail=cut_tail,
    )


def _all_rows(stream, seq_len, objective, offset=0):
    rows = np.arange(num_rows(len(stream), seq_len, objective))
    return stream.rows(rows, seq_len=seq_len, objective=objective, pad_id=PAD, offset=offset)


def _naive_stream(docs, objective, cut_head, cut_tail):
    tokens, doc_ids = [], []
    for d, doc in enumerate(docs):
        bos = [BOS] if objective == "mlm" and not (cut_head and d == 0) else []
        eos = [] if cut_tail and d == len(docs) - 1 else [EOS]
        framed = bos + list(doc) + eos
        tokens += framed
        doc_ids += [d] * len(framed)
    return tokens, doc_ids


def _naive_fields(tokens, doc_ids, seq_len, objective, offset):
    """Per-token loops over the rotated stream: the reference for FramedStream.rows + row_fields."""
    n = len(tokens)
    offset %= n
    tokens = tokens[offset:] + tokens[:offset]
    # The wrapped piece is a new stretch of text: give it its own document ids.
    doc_ids = doc_ids[offset:] + [d + 10**6 for d in doc_ids[:offset]]
    extra = 1 if objective == "causal" else 0
    fields = {k: [] for k in ("inputs", "targets", "weights", "positions", "segment_ids")}
    r = 0
    while r * seq_len + extra < n:

        def at(i, r=r):
            i += r * seq_len
            return (tokens[i], doc_ids[i]) if i < n else (PAD, None)

        row = {k: [] for k in fields}
        segment, position, previous = 0, 0, "start"
        for j in range(seq_len):
            token, doc = at(j)
            if doc is None:
                segment_id, position_id = 0, 0
            else:
                if doc != previous:
                    segment, position = segment + 1, 0
                segment_id, position_id = segment, position
                position += 1
            previous = doc
            if objective == "causal":
                target, target_doc = at(j + 1)
                weight = float(doc is not None and target_doc == doc)
            else:
                target, weight = token, 0.0
            for k, v in zip(fields, (token, target, weight, position_id, segment_id)):
                row[k].append(v)
        for k in fields:
            fields[k].append(row[k])
        r += 1
    return {k: np.array(v).reshape(-1, seq_len) for k, v in fields.items()}


@pytest.mark.parametrize("objective", ["causal", "mlm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(objective, seed):
    rng = np.random.default_rng(seed)
    docs = _random_docs(rng, count=12, max_len=30)
    cut_head, cut_tail = bool(seed % 2), bool(seed % 2)
    stream = _stream(docs, objective, cut_head, cut_tail)
    tokens, doc_ids = stream.tokens()
    want_tokens, want_doc_ids = _naive_stream(docs, objective, cut_head, cut_tail)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(doc_ids, want_doc_ids)
    for seq_len in (1, 7, 16, 1000):
        for offset in (0, 5, int(rng.integers(len(tokens)))):
            rows = _all_rows(stream, seq_len, objective, offset)
            got = row_fields(*rows, objective=objective)
            want = _naive_fields(want_tokens, want_doc_ids, seq_len, objective, offset)
            assert len(rows[0]) == len(want["inputs"])
            for key, value in want.items():
                np.testing.assert_array_equal(got[key], value, err_msg=f"{key} seq_len={seq_len} offset={offset}")
            assert {k: v.dtype for k, v in got.items()} == {
                "inputs": np.int32,
                "targets": np.int32,
                "weights": np.float32,
                "positions": np.int32,
                "segment_ids": np.int32,
            }


@pytest.mark.parametrize("objective", ["causal", "mlm"])
def test_invariants_on_a_large_stream(objective):
    rng = np.random.default_rng(7)
    docs = _random_docs(rng, count=400, max_len=5000)
    stream = _stream(docs, objective)
    tokens, _ = stream.tokens()
    seq_len, offset = 128, 12345
    tokens_RxW, doc_ids_RxW = _all_rows(stream, seq_len, objective, offset)
    f = row_fields(tokens_RxW, doc_ids_RxW, objective=objective)
    real = f["segment_ids"] > 0
    rotated = np.roll(tokens, -offset)
    # No token dropped: the real inputs in row order, then (causal) the last row's last target when
    # the stream's final token falls past the inputs, give back the rotated stream.
    rebuilt = f["inputs"][real]
    if len(rebuilt) < len(rotated):
        rebuilt = np.append(rebuilt, f["targets"][-1, real[-1].sum() - 1])
    np.testing.assert_array_equal(rebuilt, rotated)
    # Padding only in the last row, with pad id.
    assert real[:-1].all() and (f["inputs"][~real] == PAD).all()
    # Segments never cross documents, and positions restart at each segment.
    docs_RxL = doc_ids_RxW[:, :seq_len]
    same_segment = f["segment_ids"][:, 1:] == f["segment_ids"][:, :-1]
    np.testing.assert_array_equal(same_segment & real[:, 1:], (docs_RxL[:, 1:] == docs_RxL[:, :-1]) & real[:, 1:])
    np.testing.assert_array_equal(
        f["positions"][:, 1:][same_segment & real[:, 1:]], f["positions"][:, :-1][same_segment & real[:, 1:]] + 1
    )
    assert (f["positions"][~np.concatenate([np.zeros((len(real), 1), bool), same_segment], axis=1)] == 0).all()
    if objective == "causal":
        # Targets are the next tokens; weighted exactly where the next token is of the same document.
        np.testing.assert_array_equal(f["targets"][:, :-1], f["inputs"][:, 1:])
        next_doc = doc_ids_RxW[:, 1:]
        np.testing.assert_array_equal(f["weights"] == 1, (next_doc == docs_RxL) & real)
        # Every token but each document's first is a weighted target once (the wrap cuts one more doc).
        assert f["weights"].sum() == len(tokens) - len(docs) - 1
    else:
        np.testing.assert_array_equal(f["targets"], f["inputs"])
        assert (f["weights"] == 0).all()
        # Every document opens with bos and closes with eos; a bos always starts a segment.
        assert (f["inputs"] == BOS).sum() == (f["inputs"] == EOS).sum() == len(docs)
        assert (f["positions"][f["inputs"] == BOS] == 0).all()


def test_one_document_wrap_starts_a_new_segment():
    stream = _stream([np.arange(5, 15)], "causal", cut_tail=True)
    f = row_fields(*_all_rows(stream, 4, "causal", offset=6), objective="causal")
    # Rotated stream: 11 12 13 14 | 5 6 7 8 9 10; rows of 4 inputs.
    # Rows overlap by one token, so 10 is both the last row's second input and the previous target.
    np.testing.assert_array_equal(f["inputs"], [[11, 12, 13, 14], [5, 6, 7, 8], [9, 10, 0, 0]])
    np.testing.assert_array_equal(f["targets"], [[12, 13, 14, 5], [6, 7, 8, 9], [10, 0, 0, 0]])
    np.testing.assert_array_equal(f["weights"], [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    np.testing.assert_array_equal(f["segment_ids"], [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(f["positions"], [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 0, 0]])


def test_num_rows_edges():
    assert num_rows(0, 4, "causal") == num_rows(1, 4, "causal") == 0
    assert num_rows(2, 4, "causal") == num_rows(5, 4, "causal") == 1
    assert num_rows(6, 4, "causal") == 2
    assert num_rows(4, 4, "mlm") == 1 and num_rows(5, 4, "mlm") == 2
    tokens_RxW, _ = _all_rows(_stream([np.array([7])], "causal", cut_tail=True), 4, "causal")
    assert tokens_RxW.shape == (0, 5)
    # Rows past the end of the stream are all padding.
    tokens_RxW, doc_ids_RxW = _stream([np.array([7, 8])], "mlm").rows(
        np.array([1, 5]), seq_len=4, objective="mlm", pad_id=PAD
    )
    assert (tokens_RxW == PAD).all() and (doc_ids_RxW == PAD_DOC).all()
    assert PAD_DOC < 0


@pytest.mark.parametrize("objective", ["causal", "mlm"])
def test_documents_of_specials_only(objective):
    stream = _stream([[], [], []], objective)
    want_tokens, want_doc_ids = _naive_stream([[], [], []], objective, False, False)
    for offset in (0, 1, 2):
        got = row_fields(*_all_rows(stream, 2, objective, offset), objective=objective)
        want = _naive_fields(want_tokens, want_doc_ids, 2, objective, offset)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=f"{key} offset={offset}")


def test_gather_takes_any_shape_and_memmaps(tmp_path):
    docs = [np.arange(5, 9), np.arange(20, 23)]
    content = np.concatenate(docs).astype(np.int32)
    content.tofile(tmp_path / "tokens")
    mapped = np.memmap(tmp_path / "tokens", np.int32, mode="r", shape=content.shape)
    stream = FramedStream(mapped, [4, 3], objective="mlm", bos_id=BOS, eos_id=EOS)
    tokens, doc_ids = stream.tokens()
    for position in (0, 3, 6, len(tokens) - 1):
        token, doc = stream.gather(position)
        assert (int(token), int(doc)) == (tokens[position], doc_ids[position])
    rows, _ = stream.rows(np.arange(2), seq_len=5, objective="mlm", pad_id=PAD)
    assert type(rows) is np.ndarray and rows.flags.writeable  # batches are plain arrays, not views of the file
