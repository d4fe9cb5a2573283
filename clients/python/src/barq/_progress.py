"""Progress reporting: a callback, or a `tqdm` bar when tqdm is installed."""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from ._types import Operation

# `upsert(progress=...)`: True for a bar, or called with (documents done, documents total).
UpsertProgress = Union[bool, Callable[[int, int], None], None]
# `offload(progress=...)` and the other operations: True for a bar (bytes), or called with
# the operation after every poll.
OperationProgress = Union[bool, Callable[[Operation], None], None]


def _bar(total: int, unit: str, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    if unit == "B":
        return tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)
    return tqdm(total=total, unit=unit, desc=desc)


class UpsertReporter:
    def __init__(self, progress: UpsertProgress, total: int, desc: str) -> None:
        self.total, self.done = total, 0
        self.callback: Optional[Callable[[int, int], None]] = None
        self.bar: Any = None
        if progress is True:
            self.bar = _bar(total, "doc", desc)
        elif callable(progress):
            self.callback = progress

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class OperationReporter:
    def __init__(self, progress: OperationProgress, desc: str) -> None:
        self.progress, self.desc = progress, desc
        self.bar: Any = None

    def update(self, op: Operation) -> None:
        if callable(self.progress):
            self.progress(op)
        elif self.progress is True:
            if self.bar is None:
                self.bar = _bar(op.bytes_total, "B", self.desc or op.kind)
                if self.bar is None:
                    self.progress = None
                    return
            if op.bytes_total and self.bar.total != op.bytes_total:
                self.bar.total = op.bytes_total
            self.bar.update(op.bytes_done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
