"""Safetensors, one tensor (or a range of its rows) at a time, for merging (paper §3.3).

``SafetensorsReader`` reads a tensor or a row range with ``seek`` + ``readinto`` (no ``mmap``, one
buffer per read, the GIL released while reading, so threads read in parallel);
``StreamingSafetensorsWriter`` writes a file whose layout is declared up front, appending each
tensor's bytes as they come. Format: 8-byte little-endian header length, JSON header, raw bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


class MergeError(ValueError):
    """The parents cannot be merged (different keys, shapes, or a bad setting); the message says which."""




class SafetensorsReader:
    """Reads one tensor at a time from a ``.safetensors`` file with ``seek`` + ``read`` (no mmap)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise MergeError(f"{self.path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            try:
                header = json.loads(f.read(n))
            except ValueError as exc:
                raise MergeError(f"{self.path}: unreadable safetensors header ({exc})") from exc
        self.metadata = header.pop("__metadata__", None) or {}
        self.entries: dict[str, dict] = header
        self._data_start = 8 + n
        for k, e in header.items():
            if e["dtype"] not in _DTYPES:
                raise MergeError(f"{self.path}: tensor {k!r} has dtype {e['dtype']}, which this merger does not read")

    def keys(self) -> list[str]:
        return list(self.entries)

    def info(self, key: str) -> tuple[torch.dtype, tuple[int, ...]]:
        e = self.entries[key]
        return _DTYPES[e["dtype"]], tuple(e["shape"])

    def nbytes(self, key: str) -> int:
        a, b = self.entries[key]["data_offsets"]
        return b - a

    def get(self, key: str) -> torch.Tensor:
        shape = tuple(self.entries[key]["shape"])
        return self.get_rows(key, 0, shape[0]) if shape else self._read(key, 0, self.nbytes(key), shape)

    def get_rows(self, key: str, start: int, end: int, into: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``start:end`` (first dimension) of a tensor: one contiguous byte range of the file.

        ``into`` (a uint8 tensor at least that many bytes long) receives the bytes, and the result is a view
        of it: the caller's reusable buffer instead of fresh memory for every read."""
        dtype, shape = self.info(key)
        row = math.prod(shape[1:]) * torch.empty((), dtype=dtype).element_size()
        return self._read(key, start * row, end * row, (end - start, *shape[1:]), into)

    def _read(self, key: str, lo: int, hi: int, shape, into: torch.Tensor | None = None) -> torch.Tensor:
        a, _ = self.entries[key]["data_offsets"]
        dtype = _DTYPES[self.entries[key]["dtype"]]
        if into is not None and hi > lo:
            target = into[: hi - lo]
            buf = memoryview(target.numpy())
        else:
            buf = bytearray(hi - lo)
        with open(self.path, "rb") as f:
            f.seek(self._data_start + a + lo)
            got = f.readinto(buf)  # into the tensor's own buffer: no intermediate bytes object
        if got != hi - lo:
            raise MergeError(f"{self.path}: tensor {key!r} is truncated")
        if hi == lo:
            return torch.empty(shape, dtype=dtype)
        if into is not None:
            return target.view(dtype).reshape(shape)
        return torch.frombuffer(buf, dtype=dtype).reshape(shape)


class StreamingSafetensorsWriter:
    """Writes a ``.safetensors`` file whose tensors (names, dtypes, shapes) are declared up front.

    The header (8-byte length + JSON, padded with spaces to a multiple of 8 as the reference
    serializer does) is written first; ``write(key, tensor)`` then appends each tensor's bytes in
    the declared order. The file is written under a temporary name and renamed by ``close``, so an
    interrupted merge never leaves a file that looks complete.
    """

    def __init__(self, path: str | Path, layout: list[tuple[str, torch.dtype, tuple[int, ...]]],
                 metadata: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        header: dict = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        offset = 0
        self.order: list[str] = []
        self.expected: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}
        for key, dtype, shape in layout:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            header[key] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            self.order.append(key)
            self.expected[key] = (dtype, tuple(shape))
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.tmp, "wb")
        self._f.write(struct.pack("<Q", len(blob)))
        self._f.write(blob)
        self._next = 0
        self._part = 0  # elements of the current tensor written so far

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """The whole tensor ``key`` (the next declared one)."""
        dtype, shape = self._check_next(key)
        if tensor.dtype != dtype or tuple(tensor.shape) != shape:
            raise MergeError(f"{self.path}: tensor {key!r} is {tensor.dtype}{tuple(tensor.shape)}, declared {dtype}{shape}")
        self.write_rows(key, tensor)

    def write_rows(self, key: str, rows: torch.Tensor) -> None:
        """The next rows (first dimension) of tensor ``key``; the tensor is complete when all its bytes are written."""
        dtype, shape = self._check_next(key)
        if rows.dtype != dtype or tuple(rows.shape[1:]) != shape[1:]:
            raise MergeError(f"{self.path}: rows of {key!r} are {rows.dtype}{tuple(rows.shape)}, declared {dtype}{shape}")
        t = rows.detach().contiguous().cpu()
        if t.numel():
            self._f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # no copy
        self._part += t.numel()
        total = math.prod(shape)
        if self._part > total:
            raise MergeError(f"{self.path}: more data than declared for {key!r}")
        if self._part == total:
            self._next += 1
            self._part = 0

    def _check_next(self, key: str):
        if self._next >= len(self.order) or self.order[self._next] != key:
            want = self.order[self._next] if self._next < len(self.order) else "nothing"
            raise MergeError(f"{self.path}: expected tensor {want!r} next, got {key!r}")
        return self.expected[key]

    def close(self) -> None:
        if self._next != len(self.order):
            self._f.close()
            raise MergeError(f"{self.path}: {len(self.order) - self._next} declared tensors were never written")
        self._f.flush()
        self._f.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)
