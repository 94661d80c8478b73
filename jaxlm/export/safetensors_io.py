"""Writing and reading HF weight files: model.safetensors, or shards with model.safetensors.index.json."""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np

from jaxlm.export.errors import ExportError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
# HF's own default shard size: one file up to this, shards with an index above it.
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3

# safetensors dtype names we read; half precision comes back as float32 anyway.
_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_FLOATS = ("F64", "F32", "F16", "BF16")


def _shards(tensors: dict[str, np.ndarray], max_shard_bytes: int) -> list[list[str]]:
    """Names grouped in order into files of at most max_shard_bytes (a bigger tensor gets its own)."""
    shards, size = [[]], 0
    for name, array in tensors.items():
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += array.nbytes
    return shards


def is_weights_file(name: str) -> bool:
    """Whether a file of that name holds (or indexes) a model's weights."""
    return name == INDEX or (name.startswith("model") and name.endswith(".safetensors"))


def write(tensors: dict[str, np.ndarray], out_dir: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Writes the tensors as safetensors (sharded above max_shard_bytes) into a fresh folder; returns the
    file names."""
    from safetensors.numpy import save_file  # the hf extra; only writing needs it

    shards = _shards(tensors, max_shard_bytes)
    metadata = {"format": "pt"}  # transformers refuses files without it
    if len(shards) == 1:
        save_file(tensors, os.path.join(out_dir, SINGLE), metadata=metadata)
        return [SINGLE]
    names = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    weight_map = {}
    for file_name, shard in zip(names, shards):
        save_file({name: tensors[name] for name in shard}, os.path.join(out_dir, file_name), metadata=metadata)
        weight_map.update(dict.fromkeys(shard, file_name))
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())}, "weight_map": weight_map}
    with open(os.path.join(out_dir, INDEX), "w") as f:
        json.dump(index, f, indent=2)
    return [*names, INDEX]


def _read_file(path: str) -> dict[str, np.ndarray]:
    """One safetensors file as float32 numpy arrays (integer buffers kept as they are)."""
    with open(path, "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
    data = np.memmap(path, np.uint8, mode="r", offset=8 + header_size)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ExportError(f"{path}: parameter {name} has dtype {info['dtype']}, which jaxlm cannot read")
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], _DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float32) if info["dtype"] in _FLOATS else np.array(array)
    return tensors


def read(hf_dir: str) -> dict[str, np.ndarray]:
    """Every tensor of an HF checkpoint directory, single-file or sharded."""
    if os.path.exists(os.path.join(hf_dir, SINGLE)):
        return _read_file(os.path.join(hf_dir, SINGLE))
    index_path = os.path.join(hf_dir, INDEX)
    if not os.path.exists(index_path):
        raise ExportError(
            f"{hf_dir}: no {SINGLE} or {INDEX}; jaxlm reads safetensors weights only "
            "(re-save the model with transformers' save_pretrained to get them)"
        )
    with open(index_path) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for file_name in files:
        tensors.update(_read_file(os.path.join(hf_dir, file_name)))
    return tensors
