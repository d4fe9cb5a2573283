"""Vectors on the wire: base64 of little-endian float32 (exact, and cheap for both sides).

Input is a 2-D numpy array or a sequence of sequences of numbers. Everything is checked before
anything is sent: the shape, every row's length, every component finite in float32.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

from ._errors import InvalidArgument

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None  # type: ignore[assignment]

# What `upsert` accepts as vectors and `search` as a vector.
Vectors = Union["NDArray[Any]", Sequence[Sequence[float]]]
VectorLike = Union["NDArray[Any]", Sequence[float]]


def has_numpy() -> bool:
    return _np is not None


def _b64(raw: Union[bytes, memoryview]) -> bytes:
    return binascii.b2a_base64(raw, newline=False)


class Matrix:
    """Validated vectors, `rows` x `dim`, as float32 little-endian bytes (one buffer)."""

    def __init__(self, data: Union[bytes, memoryview], rows: int, dim: int) -> None:
        self.data = memoryview(data)
        self.rows = rows
        self.dim = dim

    @property
    def b64_len(self) -> int:
        """Characters of one row's base64."""
        return 4 * ((4 * self.dim + 2) // 3)

    def row_b64(self, i: int) -> bytes:
        step = 4 * self.dim
        return _b64(self.data[i * step : (i + 1) * step])


def _describe(ids: Sequence[str], row: int) -> str:
    return f"row {row} (document {ids[row]!r})" if row < len(ids) else f"row {row}"


def _bad_component(x: float) -> str:
    return "NaN" if x != x else ("inf" if x > 0 else "-inf")


def matrix(vectors: Vectors, ids: Sequence[str]) -> Matrix:
    """Check `vectors` (one row per id) and pack them as float32."""
    if _np is not None:
        return _matrix_numpy(vectors, ids)
    return _matrix_python(vectors, ids)


def _matrix_numpy(vectors: Vectors, ids: Sequence[str]) -> Matrix:
    assert _np is not None
    np = _np
    if isinstance(vectors, np.ndarray):
        arr = vectors
    else:
        rows = list(vectors)
        if rows and not all(len(r) == len(rows[0]) for r in rows):
            _ragged(rows, ids)
        try:
            arr = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"vectors must be numbers: {e}") from None
    if arr.ndim != 2:
        raise InvalidArgument(
            f"vectors must be a 2-D array (one row per document), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "fiub":
        raise InvalidArgument(f"vectors must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = np.ascontiguousarray(arr, dtype="<f4")
    finite = np.isfinite(f32)
    if not finite.all():
        row, col = (int(v[0]) for v in np.nonzero(~finite))
        src = float(arr[row, col])
        what = _bad_component(src) if not math.isfinite(src) else f"{src!r}, out of float32 range"
        raise InvalidArgument(
            f"vector of {_describe(ids, row)}: component {col} is {what}; "
            "only finite float32 numbers are allowed"
        )
    return Matrix(f32.data.cast("B"), int(f32.shape[0]), int(f32.shape[1]))


def _ragged(rows: Sequence[Sequence[float]], ids: Sequence[str]) -> None:
    dim = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != dim:
            raise InvalidArgument(
                f"vector of {_describe(ids, i)} has {len(r)} components, row 0 has {dim}: "
                "every vector must have the same dimension"
            )


def _matrix_python(vectors: Vectors, ids: Sequence[str]) -> Matrix:
    rows: list[Sequence[float]] = list(vectors)
    if not rows:
        return Matrix(b"", 0, 0)
    if any(isinstance(r, (int, float)) for r in rows):
        raise InvalidArgument("vectors must be a list of vectors (one per document), not numbers")
    _ragged(rows, ids)
    dim = len(rows[0])
    pack = struct.Struct(f"<{dim}f").pack
    out = bytearray()
    for i, r in enumerate(rows):
        try:
            out += pack(*r)
        except (struct.error, OverflowError, TypeError) as e:
            raise InvalidArgument(f"vector of {_describe(ids, i)}: {e}") from None
        if not math.isfinite(sum(r)):
            j, x = next((j, x) for j, x in enumerate(r) if not math.isfinite(x))
            raise InvalidArgument(
                f"vector of {_describe(ids, i)}: component {j} is {_bad_component(x)}; "
                "only finite float32 numbers are allowed"
            )
    return Matrix(bytes(out), len(rows), dim)


def vector_b64(vector: VectorLike) -> str:
    """One query vector as base64 float32."""
    if _np is not None:
        arr = _np.asarray(vector)
        if arr.ndim != 1:
            raise InvalidArgument(f"a query vector must be 1-D, got shape {arr.shape}")
        m = _matrix_numpy(arr.reshape(1, -1), [])
    else:
        m = _matrix_python([list(vector)], [])
    return m.row_b64(0).decode("ascii") if m.rows else ""


def to_numpy(vector: list[float]) -> NDArray[np.float32]:
    """A vector from JSON as float32 (exact: the server sends float32 values)."""
    if _np is None:
        raise ImportError("numpy is not installed: pip install 'barq-client[numpy]'")
    return _np.asarray(vector, dtype=_np.float32)
