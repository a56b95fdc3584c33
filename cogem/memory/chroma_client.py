"""Connecting to chromadb: the embedded store with its writer lock, or a chroma server.

Everything after the connection (the collection, its identity check, scoring, compaction) is the
same for both, so :class:`~cogem.memory.chroma.ChromaMemory` only ever sees a :class:`Connection`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cogem.errors import ConfigError, MemoryStoreError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

__all__ = ["LOCK_FILE", "URL_ENV", "Connection", "StoreLock", "parse_url"]

LOCK_FILE = "cogem.lock"
URL_ENV = "COGEM_CHROMA_URL"


class StoreLock:
    """An exclusive, non-blocking ``flock`` on ``<store>/cogem.lock``: one writer per store.

    The holder's pid is written into the file so the refusal can name it. The kernel drops the
    lock when the process dies, however it dies, so a crashed writer never wedges the store.
    Two opens in the same process conflict too (``flock`` locks belong to the open file).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise MemoryStoreError(f"cannot create lock file {str(self.path)!r}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if holder == os.getpid():
                who = "this process already has it open"
            elif holder is not None:
                who = f"it is open in process {holder}"
            else:
                who = "another process has it open"
            raise MemoryStoreError(
                f"memory store at {str(directory)!r} is locked ({who}); a store has one writer "
                "at a time: close the other user, or point this one at a chroma server "
                f"(set {URL_ENV})"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # Closing the descriptor releases the flock; the file stays (removing it would race
            # with a process that has just opened it).
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def parse_url(url: str) -> tuple[str, int, bool]:
    """``http[s]://host[:port]`` → ``(host, port, ssl)``; the port defaults to 80 / 443."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"chroma server URL {url!r} must look like http://host:port", field=URL_ENV
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"chroma server URL {url!r} must not have a path", field=URL_ENV)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"chroma server URL {url!r} has a bad port", field=URL_ENV) from exc
    ssl = parts.scheme == "https"
    return parts.hostname, port if port is not None else (443 if ssl else 80), ssl


class Connection:
    """A chromadb client for one store: embedded at ``path`` (with its lock) or a server at
    ``url``. :meth:`reconnect` swaps the client while the lock stays held (compaction)."""

    def __init__(self, path: str | Path | None = None, *, url: str | None = None) -> None:
        if (path is None) == (url is None):
            raise ConfigError("give a memory store either a path or a chroma server url")
        self.path = None if path is None else Path(path)
        self.url = url
        self._lock: StoreLock | None = None
        if self.path is not None:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MemoryStoreError(
                    f"cannot create memory store directory {str(self.path)!r}: {exc}"
                ) from exc
            self._lock = StoreLock(self.path)
        try:
            self.client: ClientAPI = self._connect()
        except BaseException:
            self._release_lock()
            raise

    @property
    def local(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        return f"memory store at {str(self.path)!r}" if self.path else f"chroma server {self.url}"

    def _connect(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        try:
            if self.path is not None:
                return chromadb.PersistentClient(path=str(self.path), settings=settings)
            assert self.url is not None
            host, port, ssl = parse_url(self.url)
            return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
        except ConfigError:
            raise
        except Exception as exc:
            raise MemoryStoreError(f"cannot open {self.describe()}: {exc}") from exc

    def disconnect(self) -> None:
        """Drop the client (and, embedded, chroma's file handles); the lock stays held."""
        _close(self.client)

    def reconnect(self) -> None:
        self.client = self._connect()

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()


def _close(client: object) -> None:
    # ``close()`` appeared during chromadb 1.x; older clients just drop their handles when freed.
    close = getattr(client, "close", None)
    if callable(close):
        close()
