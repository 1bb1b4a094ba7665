"""Crash-safe files for the live watcher: atomic checkpoints and append-only outputs.

Exactly once, the way the watcher gets it: a batch is scored whole in memory
(:meth:`AppendLog.write` only buffers), then written; every so often the outputs
are fsync'ed, and only then a checkpoint records the input position, the
scoring state *and* each output's identity and size. A checkpoint is never
written after a failure, so it only ever names what was durably written. A
kill before the next checkpoint leaves output lines it does not know about; on
restart the watcher reads them back (:meth:`AppendLog.recover`: past the
recorded size, and in a fresh file if the recorded one was rotated or deleted)
and, since scoring is deterministic (data time only, state restored from the
checkpoint), the replay produces the same lines again: those are skipped, so
each line is in the output once. A full disk leaves the unwritten bytes
buffered and :meth:`AppendLog.drain` resumes at the byte where the file ends.
Nothing is ever truncated except a torn last line without its newline, which no
line-reading consumer (Zeek's Input framework, Filebeat, ``tail -F``) has
taken, since it waits for the newline.

Large scoring state (the per-host context's tables) goes beside the checkpoint as numpy arrays
(:func:`write_snapshot`, an ``.npz`` without pickles, named by the hash of its content and written
before the checkpoint that names it), so that a checkpoint of 100,000 hosts costs a fraction of a
second instead of seconds of JSON.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import stat
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from zeek_ml.formats.safeio import write_atomic


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be used (not JSON, not an object)."""


def read_json(path: str) -> dict[str, Any] | None:
    """The checkpoint (or state file) at ``path``, or None if there is none.

    Raises :class:`CheckpointError` naming the file when it is not a JSON object (never a
    traceback: a half-written file cannot come from :func:`write_json_atomic`, but a hand edit can).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise CheckpointError(f"{path}: not a checkpoint ({e}); move it away to start afresh") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a JSON {type(data).__name__}, not an object)")
    return data


SNAPSHOT_INFIX = ".arrays-"
_SNAPSHOT_NAME = re.compile(r"[^/\\]+\.arrays-[0-9a-f]{16}\.npz")


def write_snapshot(checkpoint: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write ``arrays`` beside ``checkpoint`` (``<name>.arrays-<hash>.npz``, atomically; kept as it is
    when that content is there already) and return what the checkpoint keeps to find and check it."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    name = f"{os.path.basename(checkpoint)}{SNAPSHOT_INFIX}{digest[:16]}.npz"
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), name)
    try:
        st = os.lstat(path)
        there = stat.S_ISREG(st.st_mode) and st.st_size == len(data)  # a link there: write_atomic refuses it
    except OSError:
        there = False
    if not there:
        write_atomic(path, data)
    return {"file": name, "sha256": digest, "bytes": len(data)}


def read_snapshot(checkpoint: str, ref: Any) -> dict[str, np.ndarray]:
    """The arrays a checkpoint's ``ref`` names (:func:`write_snapshot`). :class:`CheckpointError` naming
    the file when it is missing, not the one the checkpoint recorded, or not plain arrays."""
    name = ref.get("file") if isinstance(ref, dict) else None
    if not isinstance(name, str) or not _SNAPSHOT_NAME.fullmatch(name):
        raise CheckpointError(f"{checkpoint}: names no usable arrays file ({name!r}); move it away to start afresh")
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the arrays of {checkpoint} ({e.strerror})") from None
    if hashlib.sha256(data).hexdigest() != ref.get("sha256"):
        raise CheckpointError(f"{path}: not the arrays {checkpoint} recorded (sha256 differs); move both away")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path}: not a numpy arrays file ({e})") from None


def save_scorer(checkpoint: str, scorer: Any) -> dict[str, Any]:
    """What a checkpoint keeps of ``scorer``'s state: its JSON part, with its host tables written beside
    ``checkpoint`` as arrays first (:func:`write_snapshot`); ``{}`` for a scorer without a host context.
    After the checkpoint is written, :func:`drop_other_snapshots` with this removes the older arrays."""
    meta, arrays = scorer.snapshot()
    return {"meta": meta, "arrays": write_snapshot(checkpoint, arrays)} if meta else {}


def restore_scorer(checkpoint: str, scorer: Any, saved: dict[str, Any]) -> None:
    """Give ``scorer`` the state :func:`save_scorer` kept (or a version 1 checkpoint's JSON state)."""
    if "arrays" in saved:
        scorer.restore_snapshot(saved.get("meta") or {}, read_snapshot(checkpoint, saved["arrays"]))
    else:
        scorer.restore(saved)


def drop_other_snapshots(checkpoint: str, saved: dict[str, Any]) -> None:
    """Remove the arrays files of ``checkpoint`` other than the one ``saved`` (:func:`save_scorer`) names
    (older ones, or left by a crash)."""
    keep = saved["arrays"]["file"] if saved else None
    directory = os.path.dirname(os.path.abspath(checkpoint))
    prefix = os.path.basename(checkpoint) + SNAPSHOT_INFIX
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.startswith(prefix) and entry.name != keep and _SNAPSHOT_NAME.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


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


FINGERPRINT_BYTES = 1024
"""How much of an output's start the checkpoint hashes to know the file again (its header)."""

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""Write errors that pass once space is freed: the watcher waits and retries instead of failing."""


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a full file system or an exhausted quota."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


DISK_FULL_BACKOFF = (0.25, 5.0)
"""Seconds between tries while the disk is full: the first, doubling up to the second."""
DISK_FULL_REMINDER = 60.0
"""Seconds between the log lines that say the disk is still full."""


def wait_out_disk_full(
    action: Callable[[], None],
    stop: threading.Event,
    on_full: Callable[[OSError], None],
    on_stop: Callable[[OSError], OSError] | None = None,
) -> bool:
    """Run ``action`` (writes); while it fails with a full disk or quota, call ``on_full(error)`` and try again
    after a backoff (:data:`DISK_FULL_BACKOFF`). True when it had to wait. Any other error is raised; so is the
    full disk once ``stop`` is set (as ``on_stop(error)`` if given), ending the wait at once."""
    delay, waited = DISK_FULL_BACKOFF[0], False
    while True:
        try:
            action()
            return waited
        except OSError as e:
            if not is_disk_full(e):
                raise
            waited = True
            on_full(e)
            if stop.wait(delay):
                if on_stop is None:
                    raise
                raise on_stop(e) from e
            delay = min(delay * 2, DISK_FULL_BACKOFF[1])


def _path_error(e: OSError, path: str) -> OSError:
    """``e`` naming ``path`` (``os.write`` errors name no file), for a one-line message."""
    if e.filename:
        return e
    return OSError(e.errno, e.strerror or str(e), path)


OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class AppendLog:
    """An output file we only ever append to, in whole lines.

    :meth:`write` only buffers (it cannot fail): a batch is scored whole in memory first, then
    :meth:`drain` writes it. A write the file system refuses (disk full) leaves what was not
    written in :attr:`unwritten`, and the next :meth:`drain` carries on from the exact byte where
    the file ends, finishing a line cut short, so nothing is lost or written twice.

    ``header`` is written when the file is new or empty (a Zeek TSV header block, or nothing
    for JSON lines); a file holding only the start of a header (cut short by a kill or a full
    disk) is started again; an existing file whose header differs from ours is moved aside
    (``NAME.<n>.old``) rather than mixed. Before each write the path is checked: if the file was
    moved away (logrotate without SIGHUP) it gets ``trailer`` (``#close``) and a fresh file is
    started at ``path``; if it was deleted, a fresh file too (never writing into a deleted
    inode); if it was truncated in place (``copytruncate``), the header is written again.
    :meth:`reopen` (SIGHUP) does the same on request. Never through a symbolic link
    (``O_NOFOLLOW``). File-like enough (``write``/``flush``/``close``) to be the target of a
    :class:`~zeek_ml.formats.writer.ZeekLogWriter`.
    """

    def __init__(
        self,
        path: str,
        header: bytes = b"",
        trailer: bytes | Callable[[], bytes] = b"",
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.path = os.path.abspath(path)
        self.header = header
        self.trailer = trailer
        self.on_event = on_event or (lambda kind, info: None)
        self.pending: Counter[bytes] = Counter()
        """Lines written after the last checkpoint, before a crash: the replay skips them once each."""
        self.skipped = 0
        self.moved_aside: str | None = None
        self.unwritten = bytearray()
        """Bytes accepted by :meth:`write` and not in the file yet."""
        self.torn = b""
        """The start of a line already in the file whose end is still in :attr:`unwritten`."""
        self.switched = False
        """Set when the file was replaced by a fresh one (moved or deleted under us, or SIGHUP)."""
        self.fd = -1
        self._created = False
        self._open()

    # ------------------------------------------------------------------ files
    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, exist_ok=True)
            st = _lstat(self.path)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise OSError(errno.ELOOP, "is a symbolic link; zeek-ml does not write through links", self.path)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "is not a regular file", self.path)
            if st is not None and st.st_size > 0:
                self._check_existing()
            self.fd = os.open(self.path, OPEN_FLAGS, 0o644)
        except OSError as e:
            raise _path_error(e, self.path) from e
        self._end = os.fstat(self.fd).st_size
        if self._end == 0:
            self._created = True
            if self.header:
                self.unwritten[:0] = self.header

    def _check_existing(self) -> None:
        """Keep an existing file with our header; restart a torn header; move aside any other (for lines
        without a header, JSON, a file that starts with one: a TSV log, never to be mixed with JSON lines)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            existing = os.read(fd, len(self.header) + 65536)
        finally:
            os.close(fd)
        if not self.header:
            if existing.startswith(b"#"):
                self.moved_aside = _aside_name(self.path)
                os.replace(self.path, self.moved_aside)
        elif _torn_header(existing, self.header):
            os.truncate(self.path, 0)  # a header cut short: no data line, nobody has read a row
        elif not _same_header(existing, self.header):
            self.moved_aside = _aside_name(self.path)
            os.replace(self.path, self.moved_aside)

    def identity(self) -> dict[str, int | str]:
        """What the checkpoint records: the file (device, inode) and its size now (all written)."""
        if self.unwritten:
            raise RuntimeError(f"{self.path}: identity asked with {len(self.unwritten)} bytes not written")
        st = os.fstat(self.fd)
        head = os.pread(self.fd, min(st.st_size, FINGERPRINT_BYTES), 0) if st.st_size else b""
        return {
            "path": self.path,
            "dev": st.st_dev,
            "ino": st.st_ino,
            "size": st.st_size,
            "fp_len": len(head),
            "fp_hash": hashlib.sha256(head).hexdigest(),
        }

    def recover(self, saved: dict[str, Any] | None) -> int:
        """Compare the file with its checkpointed identity; remember lines written after it.

        Those lines are in the checkpointed file past its recorded size, and, if that file was
        moved away (rotated) or deleted after the checkpoint, in the new file at ``path``, all
        of whose rows were written after the checkpoint. A torn last line (a kill mid-write)
        is cut off: no line-reading consumer has taken it, since it waits for the newline.
        Returns how many lines there are (to be matched by the replay).
        """
        if not saved:
            return 0
        size = int(saved.get("size", 0))
        lines: list[bytes] = []
        if _is_saved_file(self.path, saved):
            lines += _tail_lines(self.path, size)
        else:
            old = _find_saved(os.path.dirname(self.path), saved)
            if old is not None:
                lines += _tail_lines(old, size)
            lines += _tail_lines(self.path, 0)
        self.pending = Counter(line for line in lines if not line.startswith(b"#"))
        self._end = os.fstat(self.fd).st_size  # a torn last line may have been cut off
        return sum(self.pending.values())

    def unmatched(self) -> int:
        """Lines written before a crash that the replay did not reproduce; forgets them."""
        left = sum(self.pending.values())
        self.pending.clear()
        return left

    # ------------------------------------------------------------------ file-like
    def write(self, data: bytes) -> int:
        """Accept whole lines (buffered: :meth:`drain` writes them); replayed ones are dropped."""
        n = len(data)
        if self.pending:
            data = self._skip_replayed(data)
        self.unwritten += data
        return n

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
        """Nothing: writing is :meth:`drain`, durability :meth:`sync`."""

    def drain(self) -> None:
        """Write what is buffered, to the file the path names now.

        On an error (``ENOSPC``...) the bytes not written stay buffered and the error, naming
        the file, is raised; calling again resumes at the exact byte where the file ends.
        """
        if not self.unwritten and self.fd >= 0:
            return
        try:
            self._follow_path()
            self._write_upto(len(self.unwritten))
        except OSError as e:
            raise _path_error(e, self.path) from e

    def _write_upto(self, end: int) -> None:
        """Write the first ``end`` bytes of :attr:`unwritten` (short writes on a full disk resume)."""
        while end > 0:
            n = os.write(self.fd, self.unwritten if end == len(self.unwritten) else self.unwritten[:end])
            self._end += n
            cut = self.unwritten.rfind(b"\n", 0, n)
            self.torn = self.torn + bytes(self.unwritten[:n]) if cut < 0 else bytes(self.unwritten[cut + 1 : n])
            del self.unwritten[:n]
            end -= n

    def _follow_path(self) -> None:
        """Whether ``path`` still names our file; if not (moved or deleted), start a fresh one."""
        if self.fd < 0:  # a fresh file could not be opened last time (disk full): try again
            self._open()
            return
        st = _lstat(self.path)
        mine = os.fstat(self.fd)
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            if mine.st_size < self._end:  # logrotate's copytruncate: same file, emptied under us
                self.on_event(
                    "output_truncated",
                    {"file": self.path, "message": "the file was truncated under us: starting it again with a header"},
                )
                self.unwritten[:0] = self.header + self.torn  # a line begun before is written again, whole
                self.torn = b""
                self.switched = True
            self._end = mine.st_size
            return
        deleted = mine.st_nlink == 0
        self.on_event(
            "output_deleted" if deleted else "output_moved",
            {
                "file": self.path,
                "message": "the file was deleted under us: starting a new one"
                if deleted
                else "the file was moved away (rotated without SIGHUP): closing it and starting a new one",
            },
        )
        self._switch(deleted)

    def _switch(self, deleted: bool) -> None:
        """Leave the current file (finishing its last line and writing the trailer) and open a new one."""
        if deleted:
            # a line begun in the deleted file is written again, whole, in the new one
            self.unwritten[:0] = self.torn
        else:
            if self.torn:  # finish the line begun in the moved file, where its start is
                self._write_upto(self.unwritten.find(b"\n") + 1)
            trailer = self.trailer() if callable(self.trailer) else self.trailer
            if trailer:
                # best effort: a moved file lacking its #close (disk full) still holds every row
                with contextlib.suppress(OSError):
                    _write_all(self.fd, trailer)
            with contextlib.suppress(OSError):
                os.fsync(self.fd)
        self.torn = b""
        os.close(self.fd)
        self.fd = -1
        self.switched = True
        self._open()

    def sync(self) -> None:
        """Make everything written durable (the file, and its name if we created it)."""
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise _path_error(e, self.path) from e
        if self._created:
            fsync_dir(os.path.dirname(self.path))
            self._created = False

    def reopen(self) -> None:
        """SIGHUP (logrotate's ``postrotate``): if the file was moved or deleted, close it with
        ``trailer`` and start a fresh one now, rather than at the next write; else keep it."""
        try:
            self.drain()
            self._follow_path()
        except OSError as e:
            raise _path_error(e, self.path) from e

    def close(self) -> None:
        """Close the file (what is not written is dropped: the checkpoint does not count it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _tail_lines(path: str, offset: int) -> list[bytes]:
    """The whole lines of ``path`` from byte ``offset`` on; a torn last line is cut off the file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        if size <= offset:
            return []
        tail = os.pread(fd, size - offset, offset)
        cut = tail.rfind(b"\n") + 1
        if cut < len(tail):
            os.ftruncate(fd, offset + cut)
            tail = tail[:cut]
    finally:
        os.close(fd)
    return tail.splitlines(keepends=True)


def _is_saved_file(path: str, saved: dict[str, Any]) -> bool:
    """Whether ``path`` is the file a checkpoint recorded: same device and inode, same first bytes
    (an inode number is reused at once after a delete, so it alone does not tell)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (saved.get("dev"), saved.get("ino")):
            return False
        if "fp_hash" not in saved:  # a checkpoint from before fingerprints: the inode has to do
            return True
        fp_len = int(saved.get("fp_len", 0))
        return hashlib.sha256(os.pread(fd, fp_len, 0)).hexdigest() == saved["fp_hash"]
    finally:
        os.close(fd)


def _find_saved(directory: str, saved: dict[str, Any]) -> str | None:
    """The checkpointed file if it is still in ``directory`` under another name (moved by logrotate)."""
    ino = saved.get("ino")
    if ino is None:
        return None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.inode() == ino and entry.is_file(follow_symlinks=False) and _is_saved_file(entry.path, saved):
                    return entry.path
    except OSError:
        return None
    return None


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


def _torn_header(existing: bytes, header: bytes) -> bool:
    """Whether ``existing`` (a whole file shorter than a header) is only the start of a header like ours."""
    if not header.startswith(b"#") or len(existing) >= len(header) or b"\n#types" in existing:
        return False
    start = min(len(existing), len(b"#separator"))
    lines = existing.split(b"\n")
    return existing[:start] == header[:start] and all(line.startswith(b"#") or not line for line in lines)


def _aside_name(path: str) -> str:
    n = 1
    while os.path.exists(f"{path}.{n}.old"):
        n += 1
    return f"{path}.{n}.old"
