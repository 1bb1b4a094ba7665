"""Crash-safe files for the live watcher: atomic checkpoints and append-only outputs.

Exactly once, the way the watcher gets it: after each batch, every output is
fsync'ed, then a checkpoint records the input position *and* each output's
size. A kill between the two leaves output lines the checkpoint does not know
about; on restart the watcher reads them back (:meth:`AppendLog.recover`) and,
since scoring is deterministic (data time only, state restored from the
checkpoint), the replayed batch produces the same lines again: those are
skipped, so each line is in the output once. Nothing is ever truncated except a
torn last line without its newline, which no line-reading consumer (Zeek's Input
framework, Filebeat, ``tail -F``) has taken, since it waits for the newline.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any], *, indent: int | None = None) -> None:
    """Write ``data`` to ``path`` so a reader (or a crash) sees the old file or the new, never a mix.

    Compact with sorted keys (checkpoints), or with ``indent`` for people: keys in their order, a final newline.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    if indent is None:
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    else:
        payload = (json.dumps(data, indent=indent) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)


def read_json(path: str) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def fsync_dir(directory: str) -> None:
    """Make a rename or a file creation in ``directory`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class AppendLog:
    """An output file we only ever append to, a batch of whole lines per ``write``.

    ``header`` is written when the file is new or empty (a Zeek TSV header block,
    or nothing for JSON lines); an existing file whose header differs from ours is
    moved aside (``NAME.<n>.old``) rather than mixed. ``reopen`` (SIGHUP, after
    logrotate moved the file) writes ``trailer`` (``#close``) to the old file and
    starts a new one. File-like enough (``write``/``flush``/``close``) to be the
    target of a :class:`~zeek_ml.zeeklog.writer.ZeekLogWriter`.
    """

    def __init__(self, path: str, header: bytes = b"", trailer: bytes | Callable[[], bytes] = b""):
        self.path = os.path.abspath(path)
        self.header = header
        self.trailer = trailer
        self.pending: Counter[bytes] = Counter()
        self.skipped = 0
        self.moved_aside: str | None = None
        self.fd = -1
        self._open()

    # ------------------------------------------------------------------ files
    def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        if self.header and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, "rb") as f:
                existing = f.read(len(self.header) + 65536)
            if not _same_header(existing, self.header):
                self.moved_aside = _aside_name(self.path)
                os.replace(self.path, self.moved_aside)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size == 0 and self.header:
            _write_all(self.fd, self.header)
            os.fsync(self.fd)
            fsync_dir(directory)

    def identity(self) -> dict[str, int | str]:
        """What the checkpoint records: the file (device, inode) and its size now."""
        st = os.fstat(self.fd)
        return {"path": self.path, "dev": st.st_dev, "ino": st.st_ino, "size": st.st_size}

    def recover(self, saved: dict[str, Any] | None) -> int:
        """Compare the file with its checkpointed identity; remember lines written after it.

        Returns how many such lines there are (to be matched by the replay).
        """
        if not saved:
            return 0
        st = os.fstat(self.fd)
        if (st.st_dev, st.st_ino) != (saved.get("dev"), saved.get("ino")):
            return 0  # rotated away while we were down: nothing to match here
        size = int(saved.get("size", 0))
        if st.st_size <= size:
            return 0
        with open(self.path, "rb") as f:
            f.seek(size)
            tail = f.read()
        cut = tail.rfind(b"\n") + 1
        if cut < len(tail):  # a torn last line (killed mid-write): nobody has read it as a line
            os.truncate(self.path, size + cut)
            tail = tail[:cut]
        self.pending = Counter(tail.splitlines(keepends=True))
        return sum(self.pending.values())

    def unmatched(self) -> int:
        """Lines written before a crash that the replay did not reproduce; forgets them."""
        left = sum(self.pending.values())
        self.pending.clear()
        return left

    # ------------------------------------------------------------------ file-like
    def write(self, data: bytes) -> int:
        if self.pending:
            data = self._skip_replayed(data)
        if data:
            _write_all(self.fd, data)
        return len(data)

    def _skip_replayed(self, data: bytes) -> bytes:
        keep: list[bytes] = []
        for line in data.splitlines(keepends=True):
            if self.pending.get(line, 0) > 0:
                self.pending[line] -= 1
                if not self.pending[line]:
                    del self.pending[line]
                self.skipped += 1
            else:
                keep.append(line)
        return b"".join(keep)

    def flush(self) -> None:
        """Nothing: durability is :meth:`sync`, once per batch."""

    def sync(self) -> None:
        os.fsync(self.fd)

    def reopen(self) -> None:
        """Close the current file with ``trailer`` and start a fresh one at ``path`` (SIGHUP)."""
        trailer = self.trailer() if callable(self.trailer) else self.trailer
        if trailer:
            _write_all(self.fd, trailer)
        os.fsync(self.fd)
        os.close(self.fd)
        self.pending.clear()
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


def _meta_lines(block: bytes) -> list[bytes]:
    """The lines of a TSV header block that define the columns (not ``#open``)."""
    out: list[bytes] = []
    for line in block.split(b"\n"):
        if not line.startswith(b"#"):
            break
        if line.startswith((b"#separator", b"#set_separator", b"#path", b"#fields", b"#types")):
            out.append(line)
    return out


def _same_header(existing: bytes, header: bytes) -> bool:
    if not header.startswith(b"#"):
        return True
    return _meta_lines(existing) == _meta_lines(header)


def _aside_name(path: str) -> str:
    n = 1
    while os.path.exists(f"{path}.{n}.old"):
        n += 1
    return f"{path}.{n}.old"
