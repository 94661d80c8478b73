"""Training batches as a pure function of (seed, step), split per host, prefetched, resumable.

The global batch of a step is defined without reference to hosts; host i of P takes the contiguous
rows [i*B/P, (i+1)*B/P) and computes only those. So the union over hosts is the single-host batch,
hosts never read the same row, and a run resumed on another number of hosts sees the same data.
The iterator's whole state is the step plus a fingerprint of what decides the batches.
"""

from __future__ import annotations

import functools
import itertools
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from jaxlm.data.errors import DataError
from jaxlm.data.packing import FramedStream, num_rows, row_fields
from jaxlm.data.sentence_pairs import SentencePairs

# The first word of the data-order seed, apart from masking.MASK_STREAM.
_ORDER_STREAM = 2
_EPOCHS_KEPT = 4  # A batch spans at most two epochs; a few more serve callers that step back.

Masker = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


def host_slice(batch_size: int, process_index: int, process_count: int) -> slice:
    """The rows of a global batch that process `process_index` of `process_count` owns."""
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if batch_size % process_count:
        raise DataError(
            f"config.data.batch_size={batch_size}: not divisible by the {process_count} processes "
            f"(hosts) of this run; make it a multiple of {process_count}"
        )
    rows = batch_size // process_count
    return slice(process_index * rows, (process_index + 1) * rows)


def host_share(batch: dict[str, np.ndarray], process_index: int, process_count: int) -> dict[str, np.ndarray]:
    """This host's contiguous rows of a global batch (for validation batches)."""
    rows = host_slice(len(next(iter(batch.values()))), process_index, process_count)
    return {key: value[rows] for key, value in batch.items()}


class TrainBatches:
    """Training batches as a pure function of (seed, step), over endless epochs of the train stream.

    Global row g = step * batch_size + i belongs to epoch g // num_rows. Each epoch reads the stream
    rotated by an offset drawn from (seed, epoch), cut into rows, in a permutation drawn from
    (seed, epoch), so epochs see different windows and a resumed run needs only the step.
    With `pairs` (BERT's next-sentence input), row i of an epoch is instead pair row i drawn anew for
    that epoch; the permutation still orders the rows.
    `fingerprint_parts` (corpus, tokenizer, shapes, seed, objective, ...) name what decides the batches.
    """

    def __init__(
        self,
        stream: FramedStream,
        *,
        seq_len: int,
        batch_size: int,
        objective: str,
        seed: int,
        pad_id: int,
        masker: Masker | None,
        fingerprint: str,
        fingerprint_parts: dict,
        pairs: SentencePairs | None = None,
    ):
        self.stream, self.pairs = stream, pairs
        self.num_tokens = len(stream)
        self.num_rows = pairs.num_rows if pairs else num_rows(self.num_tokens, seq_len, objective)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.fingerprint, self.fingerprint_parts = fingerprint, fingerprint_parts
        self._objective, self._seed, self._pad_id, self._masker = objective, seed, pad_id, masker
        # The epochs recent batches touched, oldest first; the prefetch thread and the caller may both
        # be reading, so the cache is locked.
        self._epochs: dict[int, tuple[int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _epoch(self, epoch: int) -> tuple[int, np.ndarray]:
        """(offset, order_R) of one epoch."""
        with self._lock:
            if epoch not in self._epochs:
                rng = np.random.default_rng([_ORDER_STREAM, self._seed % 2**64, epoch])
                offset = int(rng.integers(self.num_tokens))
                if len(self._epochs) >= _EPOCHS_KEPT:
                    del self._epochs[next(iter(self._epochs))]
                self._epochs[epoch] = offset, rng.permutation(self.num_rows)
            return self._epochs[epoch]

    def host_batch(self, step: int, process_index: int, process_count: int) -> dict[str, np.ndarray]:
        """This host's rows of the global batch of `step`: dict of [batch_size / process_count, seq_len] arrays
        (and [batch_size / process_count] labels for sentence pairs)."""
        rows = host_slice(self.batch_size, process_index, process_count)
        rows_B = step * self.batch_size + np.arange(rows.start, rows.stop)
        epochs_B, index_B = np.divmod(rows_B, self.num_rows)
        # The rows are consecutive, so each epoch's are one run (a batch spans two at the epoch's end).
        cuts = np.flatnonzero(np.diff(epochs_B)) + 1
        parts = [
            self._rows(int(epochs[0]), index)
            for epochs, index in zip(np.split(epochs_B, cuts), np.split(index_B, cuts))
        ]
        fields = (
            parts[0] if len(parts) == 1 else {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        )
        if self._masker:
            fields["inputs"], fields["targets"], fields["weights"] = self._masker(
                fields["inputs"], seed=self._seed, step=step, example_ids_B=rows_B
            )
        return fields

    def _rows(self, epoch: int, index_R: np.ndarray) -> dict[str, np.ndarray]:
        """Batch fields of rows `index_R` of `epoch`, before masking."""
        offset, order_R = self._epoch(epoch)
        if self.pairs is not None:
            return self.pairs.rows(order_R[index_R], seed=self._seed, epoch=epoch)
        tokens_RxW, doc_ids_RxW = self.stream.rows(
            order_R[index_R], seq_len=self.seq_len, objective=self._objective, pad_id=self._pad_id, offset=offset
        )
        return row_fields(tokens_RxW, doc_ids_RxW, objective=self._objective)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The global batch of `step` (as host_batch, all rows), the same for the same (seed, step)."""
        return self.host_batch(step, 0, 1)

    def iterate(
        self, start_step: int = 0, process_index: int = 0, process_count: int = 1, prefetch: int = 2
    ) -> Iterator[dict[str, np.ndarray]]:
        """This host's batches of steps start_step, start_step + 1, ..., `prefetch` of them made ahead
        in a background thread (0 = none). Close the iterator (or let it be collected) to stop the thread."""
        host_slice(self.batch_size, process_index, process_count)  # Fail here, not in the thread.
        make = functools.partial(self.host_batch, process_index=process_index, process_count=process_count)
        if prefetch <= 0:
            return map(make, itertools.count(start_step))
        return _prefetched(make, start_step, prefetch)

    def state(self, step: int) -> dict:
        """The iterator's state before `step`, small and JSON-serializable, for the checkpoint."""
        return {"step": int(step), "fingerprint": self.fingerprint, "parts": dict(self.fingerprint_parts)}

    def restore(self, state: dict) -> int:
        """The step to continue from, after checking `state` (from `state()`) was made with this data."""
        if state.get("fingerprint") == self.fingerprint:
            return int(state["step"])
        saved = state.get("parts", {})
        changed = [
            f"{key} {saved.get(key)!r} -> {value!r}"
            for key, value in self.fingerprint_parts.items()
            if saved.get(key) != value
        ] or [f"fingerprint {state.get('fingerprint')!r} -> {self.fingerprint!r}"]
        raise DataError(
            f"the checkpoint's data state does not match this run's data ({'; '.join(changed)}): "
            "resuming would not continue the same batches. Restore the corpus, tokenizer and "
            "data settings the checkpoint was made with, or start a fresh workdir"
        )


def _prefetched(make: Callable[[int], dict], start_step: int, depth: int) -> Iterator[dict]:
    """make(start_step), make(start_step + 1), ... computed `depth` ahead in a daemon thread."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        step = start_step
        while not stop.is_set():
            try:
                item = make(step), None
            except Exception as e:  # Re-raised in the consumer, where it means something.
                item = None, e
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return
            step += 1

    thread = threading.Thread(target=work, name="jaxlm-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch, error = ready.get()
            if error is not None:
                raise error
            yield batch
    finally:
        stop.set()
        thread.join()
