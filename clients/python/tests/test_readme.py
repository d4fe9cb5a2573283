"""The README's Python blocks, run in order against the test server; each `# ...` line right
under the code is output the blocks must print (`...` matches anything)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from conftest import Server

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def expected_output(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("# ")]


def matches(pattern: str, line: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("..."))), line) is not None


def test_readme_blocks_run_as_written(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARQ_URL", server.url)
    monkeypatch.setenv("BARQ_API_KEY", server.api_key or "")
    monkeypatch.setenv("BARQ_ADMIN_API_KEY", server.admin_key or "")
    code = blocks()
    assert len(code) >= 4
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, block in enumerate(code):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        printed = out.getvalue().splitlines()
        want = expected_output(block)
        assert len(printed) == len(want), (block, printed)
        for w, p in zip(want, printed):
            assert matches(w, p), f"README block {i + 1}: expected {w!r}, printed {p!r}"
