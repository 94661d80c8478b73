"""The sources a run's data section names: its training documents and, when given apart, its validation ones."""

from __future__ import annotations

import ml_collections

from jaxlm.data.errors import DataError
from jaxlm.data.sources import SOURCES, JsonlSource, ListSource, Source, TextSource, builtin_documents


def train_source(data: ml_collections.ConfigDict) -> Source:
    """The source of training documents the data section (`config.data`) names."""
    if data.source in ("text", "jsonl") and not data.path:
        raise DataError(f"config.data.path='': data.source=\"{data.source}\" needs a file or glob to read")
    if data.source == "tfds" and not data.tfds_name:
        raise DataError('config.data.tfds_name=\'\': data.source="tfds" needs a TFDS dataset name, e.g. "lm1b"')
    if data.source in ("jsonl", "tfds") and not data.text_field:
        raise DataError(f"config.data.text_field='': data.source=\"{data.source}\" needs the field holding the text")
    if data.source == "builtin":
        return ListSource(builtin_documents(), "config.data.source='builtin'", "the built-in corpus")
    if data.source == "text":
        return TextSource(data.path, data.document)
    if data.source == "jsonl":
        return JsonlSource(data.path, data.text_field)
    if data.source == "tfds":
        from jaxlm.data.tfds_source import TfdsSource  # TensorFlow loads only for TFDS runs.

        return TfdsSource(data.tfds_name, data.tfds_split, data.text_field, data.tfds_data_dir)
    raise DataError(f"config.data.source={data.source!r}: must be one of {', '.join(SOURCES)}")


def val_source(data: ml_collections.ConfigDict) -> Source | None:
    """The separate validation source the data section names, or None to hold out `data.val_fraction`."""
    if data.source == "tfds" and data.tfds_val_split:
        from jaxlm.data.tfds_source import TfdsSource

        return TfdsSource(
            data.tfds_name,
            data.tfds_val_split,
            data.text_field,
            data.tfds_data_dir,
            split_field="config.data.tfds_val_split",
        )
    if data.source in ("text", "jsonl") and data.val_path:
        if data.source == "text":
            return TextSource(data.val_path, data.document, field="config.data.val_path")
        return JsonlSource(data.val_path, data.text_field, field="config.data.val_path")
    return None
