"""Fixtures: a real `barq serve` on a free loopback port, with an API key and an admin key, in
a temporary data directory.

The binary is `$BARQ_BIN`, else `target/debug/barq` or `target/release/barq` of the
repository. Without one the server tests skip, or fail under `CI=true`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import httpx
import pytest

import barq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
API_KEY = "test-api-key"
ADMIN_KEY = "test-admin-key"
START_TIMEOUT = 30.0


def find_binary() -> Optional[Path]:
    env = os.environ.get("BARQ_BIN")
    if env:
        return Path(env)
    for p in (REPO / "target" / "debug" / "barq", REPO / "target" / "release" / "barq"):
        if p.is_file():
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    api_key: Optional[str]
    admin_key: Optional[str]
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kw: object) -> barq.Client:
        return barq.Client(self.url, api_key=self.api_key, admin_key=self.admin_key, **kw)  # type: ignore[arg-type]

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass


def start_server(
    binary: Path,
    data_dir: Path,
    *,
    api_key: Optional[str] = API_KEY,
    admin_key: Optional[str] = ADMIN_KEY,
    args: tuple[str, ...] = (),
) -> Server:
    if not binary.is_file():
        missing(f"the barq binary {binary} does not exist")
    # The server reads BARQ_* from the environment: start from a clean slate.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARQ_")}
    env.pop("RUST_LOG", None)
    if api_key:
        env["BARQ_API_KEY"] = api_key
    if admin_key:
        env["BARQ_ADMIN_API_KEY"] = admin_key
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--data-dir",
                str(data_dir),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                *list(args),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
    server = Server(f"http://127.0.0.1:{port}", api_key, admin_key, data_dir, proc, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"barq serve exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"barq serve did not answer within {START_TIMEOUT} s:\n{server.log_tail()}")
        time.sleep(0.05)


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the server tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def barq_binary() -> Path:
    binary = find_binary()
    if binary is None:
        missing(
            "no barq binary: set BARQ_BIN or build it with `cargo build -p barq-cli` "
            f"(looked in {REPO / 'target'})"
        )
        raise AssertionError("unreachable")
    return binary


ServerFactory = Callable[..., Server]


@pytest.fixture(scope="session")
def server_factory(
    barq_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerFactory]:
    started: list[Server] = []

    def make(**kw: object) -> Server:
        data = tmp_path_factory.mktemp("barq") / "data"
        s = start_server(barq_binary, data, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def server(server_factory: ServerFactory) -> Server:
    return server_factory()


@pytest.fixture
def client(server: Server) -> Iterator[barq.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def new_name() -> Callable[[], str]:
    return lambda: "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def collection(client: barq.Client, new_name: Callable[[], str]) -> Iterator[str]:
    """A fresh 3-dimension cosine collection, dropped afterwards."""
    name = new_name()
    client.create_collection(name, 3, "cosine")
    yield name
    with contextlib.suppress(barq.NotFound):
        client.drop_collection(name)
