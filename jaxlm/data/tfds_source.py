"""A TFDS text dataset as a source of documents: one example's text feature is one document.

Kept apart from sources.py because importing tensorflow_datasets (and TensorFlow) takes seconds and
gigabytes; only runs with `data.source="tfds"` import this module.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from jaxlm.data.errors import DataError
from jaxlm.data.sources import Source

log = logging.getLogger(__name__)


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            f'config.data.source="tfds" needs tensorflow-datasets and tensorflow ({e}); pip install "jaxlm[tfds]"'
        ) from e
    return tfds


class TfdsSource(Source):
    """The string feature `text_field` of every example of `split` of the TFDS dataset `name`.

    A dataset not yet prepared in `data_dir` is downloaded and prepared first, as `tfds.load` does;
    prepare large ones beforehand with `tfds build NAME --data_dir=...`.
    """

    def __init__(
        self, name: str, split: str, text_field: str, data_dir: str = "", split_field: str = "config.data.tfds_split"
    ):
        tfds = _tfds()
        self.field = f"config.data.tfds_name={name!r} (split {split!r})"
        try:
            self._builder = tfds.builder(name, data_dir=data_dir or None)
        except tfds.core.DatasetNotFoundError:
            raise DataError(
                f"config.data.tfds_name={name!r}: no such TFDS dataset (nor one stored in "
                f"config.data.tfds_data_dir={data_dir!r}); check the name against "
                "tfds.list_builders() and the data dir"
            ) from None
        if not self._builder.is_prepared():
            log.info("Preparing TFDS dataset %s in %s", name, self._builder.data_dir)
            try:
                self._builder.download_and_prepare()
            except Exception as e:  # Downloads fail in many ways (network, disk, manual steps).
                raise DataError(
                    f"config.data.tfds_name={name!r}: not prepared in {self._builder.data_dir} and "
                    f"preparing it failed ({type(e).__name__}: {e}); run `tfds build {name} "
                    "--data_dir=DIR` where it can download, then set config.data.tfds_data_dir=DIR"
                ) from e
        info = self._builder.info
        try:
            split_info = info.splits[split]
        except (KeyError, ValueError) as e:
            raise DataError(f"{split_field}={split!r}: {name} has splits {', '.join(info.splits)} ({e})") from None
        features = info.features
        # Scalar strings only: a sequence of strings is not one document.
        text_features = (
            [
                key
                for key, feature in features.items()
                if np.dtype(feature.np_dtype) == np.dtype(object) and feature.shape == ()
            ]
            if hasattr(features, "items")
            else []
        )
        if text_field not in text_features:
            raise DataError(
                f"config.data.text_field={text_field!r}: {name} has no such text feature; its text "
                f"features are {', '.join(map(repr, text_features)) or 'none'}"
            )
        self._split, self._text_field = split, text_field
        self.identity = {
            "kind": "tfds",
            "name": info.full_name,
            "split": split,
            "text_field": text_field,
            "data_dir": str(self._builder.data_dir),
            "examples": split_info.num_examples,
            "bytes": split_info.num_bytes,
        }

    def documents(self) -> Iterator[str]:
        """The text of each example, in the dataset's stored order (files not shuffled)."""
        self.replaced = 0
        dataset = self._builder.as_dataset(split=self._split, shuffle_files=False)
        field = self._text_field
        for raw in dataset.map(lambda example: example[field]).as_numpy_iterator():
            text = raw.decode("utf-8", errors="replace")
            self.replaced += text.count("\ufffd") - raw.count("\ufffd".encode())
            if text:
                yield text
        if self.replaced:
            log.warning("%s: %d undecodable byte sequence(s) replaced with U+FFFD", self.field, self.replaced)

    def describe(self) -> str:
        """The dataset's full name and split."""
        return f"TFDS {self.identity['name']} {self._split}"
