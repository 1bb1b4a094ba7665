"""Follow one live log (``conn.log``, ``eve.json``) through rotation, truncation and restarts.

The follower holds the open file, not the name: when Zeek closes the file
(``#close``) and renames it (``conn.2024-01-01-10-00-00.log``, or
``log-queue/conn__<open>__<close>__.log``), the follower drains it to its end
through the handle it already has, then opens the new ``conn.log`` and reads
its header. A file is known by its identity, not its name: device and inode,
and a fingerprint (sha256 of its first bytes) that survives a move, a copy or
a gzip by the archiver. That is what the checkpoint stores, with the offset of
the last whole line scored and the TSV header, so a restart resumes at the
right line of the right file, and first catches up on files rotated while the
watcher was down (found by fingerprint and ordered by their ``#open`` time).

Only whole lines are read: a partial last line waits for its newline (unless
the file was rotated, when it is the file's last word and goes to the parser as
such). ``copytruncate`` (same inode, size drops) restarts the file at 0, and a
file that vanished before it was drained is reported with what was missed.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from zeek_ml.formats.schema import MAX_LINE_BYTES
from zeek_ml.formats.writer import zeek_time
from zeek_ml.sources.files import open_binary
from zeek_ml.sources.reading import LogHeader

FINGERPRINT_BYTES = 4096
"""How much of a file's start identifies it (its header with ``#open``, its first rows)."""

FINISHED_KEPT = 64
"""Fingerprints of recently finished files, kept so a rotated copy is never read twice."""


@dataclass
class Segment:
    """Whole lines read from one file: ``data`` starts at line ``first_line`` of it."""

    file: TrackedFile
    data: bytes
    first_line: int
    final: bool


@dataclass
class TrackedFile:
    """One file of the stream being read, and how far."""

    path: str
    dev: int
    ino: int
    open_key: float
    fp_len: int = 0
    fp_hash: str = ""
    offset: int = 0
    """Bytes of whole lines read (and, once checkpointed, scored)."""
    line: int = 0
    """Lines read: the next line is ``line + 1``."""
    header: dict[str, Any] | None = None
    """The TSV header in force (the parser's state), for a resume mid-file."""
    compressed: bool = False
    corrupt: bool = field(default=False, repr=False)
    """A gzip that broke off: what was readable is read, the rest is skipped."""
    handle: IO[bytes] | None = field(default=None, repr=False)
    partial: bytes = field(default=b"", repr=False)
    parser: Any = field(default=None, repr=False)
    skipping: bool = field(default=False, repr=False)
    """Inside a line longer than MAX_LINE_BYTES (already rejected): bytes are dropped up to its newline."""

    def saved(self) -> dict[str, Any]:
        keep = ("path", "dev", "ino", "open_key", "fp_len", "fp_hash", "offset", "line", "header", "compressed")
        return {k: getattr(self, k) for k in keep}


GZIP_ERRORS = (EOFError, OSError, zlib.error)
"""What reading a corrupt or truncated gzip raises (``BadGzipFile`` is an ``OSError``)."""


def _head(path: str, n: int = FINGERPRINT_BYTES) -> bytes:
    try:
        with open_binary(path) as f:
            return f.read(n)
    except GZIP_ERRORS:
        return b""


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_OPEN_RE = re.compile(rb"^#open[\t ]+(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)", re.MULTILINE)
_NAME_TIME_RES = (
    re.compile(r"__(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)__"),  # log-queue/conn__<open>__<close>__.log
    re.compile(r"\.(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)\."),  # conn.2024-01-01-10-00-00.log
)
_ARCHIVE_RE = re.compile(r"(\d{4}-\d\d-\d\d)[/\\][^/\\]*\.(\d\d[:-]\d\d[:-]\d\d)-\d\d[:-]\d\d[:-]\d\d\.")


def open_key(path: str, head: bytes) -> float:
    """When a file was opened: its ``#open`` line, else the time in its rotated name, else its mtime."""
    m = _OPEN_RE.search(head)
    stamps: list[str] = []
    if m:
        stamps.append(m.group(1).decode())
    for regex in _NAME_TIME_RES:
        n = regex.search(os.path.basename(path))
        if n:
            stamps.append(n.group(1))
    a = _ARCHIVE_RE.search(path)
    if a:
        stamps.append(a.group(1) + "-" + a.group(2).replace(":", "-"))
    for stamp in stamps:
        opened = zeek_time(stamp)
        if opened is not None:
            return opened
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def rotated_patterns(live: str) -> list[str]:
    """Glob patterns, relative to a directory, of the names a rotated ``live`` file takes."""
    base = os.path.basename(live)
    stem = base.split(".", 1)[0]
    return [
        f"{stem}.*.log",
        f"{stem}.*.log.gz",
        f"{stem}__*__*__.log",
        f"{stem}__*__*__.log.gz",
        f"{base}.*",
        f"{stem}-*.json",
        f"{stem}-*.json.gz",
        f"{stem}.*.json",
        f"{stem}.*.json.gz",
    ]


class LogFollower:
    """Read one live log and its rotated predecessors as a single ordered stream of lines.

    ``make_parser(path, first_bytes)`` gives the parser for a new file (its
    ``header`` attribute is restored on resume). ``rotated_dirs`` are searched,
    with the live file's own directory and its ``log-queue``, for rotated files.
    """

    def __init__(
        self,
        live: str,
        make_parser: Callable[[str, bytes], Any],
        *,
        rotated_dirs: list[str] | None = None,
        batch_bytes: int = 4 << 20,
        from_end: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.live = os.path.abspath(live)
        self.make_parser = make_parser
        directory = os.path.dirname(self.live)
        self.rotated_dirs = [directory, os.path.join(directory, "log-queue"), *(rotated_dirs or [])]
        self.batch_bytes = batch_bytes
        self.from_end = from_end
        self.on_event = on_event or (lambda kind, info: None)
        self.current: TrackedFile | None = None
        self.last_open_key: float | None = None
        self.finished: list[str] = []
        self.started = False

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """JSON-able position: the file being read (identity, offset, header), what was finished."""
        cur = self.current
        if cur is not None:
            self._refresh_fingerprint(cur)
            if cur.parser is not None and getattr(cur.parser, "header", None) is not None:
                cur.header = asdict(cur.parser.header)
        return {
            "live": self.live,
            "started": self.started,
            "current": cur.saved() if cur is not None else None,
            "last_open_key": self.last_open_key,
            "finished": self.finished[-FINISHED_KEPT:],
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """Resume from a checkpoint: reopen the file it names (wherever it went) at its offset.

        Without one (a first start), the rotated files already there are history, not read;
        the live file is opened at once (at its end with ``from_end``), so the first checkpoint
        names it, and a restart before anything was scored still knows where the stream began:
        every file rotated since is caught up, none is taken for history.
        """
        if state and "started" not in state and not state.get("current") and state.get("last_open_key") is None:
            state = None  # a first-start checkpoint of an older version: it recorded nothing more
        if not state:
            self._first_start()
            return
        self.started = bool(state.get("started", True))
        self.last_open_key = state.get("last_open_key")
        self.finished = list(state.get("finished", []))
        saved = state.get("current")
        if not saved or not saved.get("fp_len"):
            return  # nothing of it was read: go on with what comes next
        path = self._find(saved)
        if path is None:
            self.on_event(
                "file_missing",
                {
                    "file": saved["path"],
                    "offset": saved["offset"],
                    "line": saved["line"],
                    "message": f"{saved['path']} is gone (not found by inode or fingerprint in "
                    f"{', '.join(self.rotated_dirs)}): whatever it held after line {saved['line']} "
                    f"(byte {saved['offset']}) was never scored",
                },
            )
            self._finish_record(saved["fp_hash"], saved["open_key"])
            return
        cur = TrackedFile(**{k: v for k, v in saved.items() if k in TrackedFile.__dataclass_fields__})
        cur.path = path
        st = os.stat(path)
        cur.dev, cur.ino = st.st_dev, st.st_ino
        self._attach(cur, skip=cur.offset)
        self.current = cur
        if path != saved["path"]:
            self.on_event("file_resumed", {"file": path, "was": saved["path"], "offset": cur.offset})

    def _first_start(self) -> None:
        """Mark the rotated files already there as read (history), then open the live file."""
        history: list[tuple[float, str]] = []
        for path in self._rotated_files():
            head = _head(path)
            if head:
                history.append((open_key(path, head), _hash(head)))
        if history:
            newest = max(key for key, _ in history)
            self.last_open_key = newest
            self.finished.extend(h for key, h in history if key == newest)
            del self.finished[:-FINISHED_KEPT]
        self.started = True
        self._open_next(first=True)

    # ------------------------------------------------------------------ reading
    def read(self) -> list[Segment]:
        """Whole lines available now, up to ``batch_bytes``, across rotations; [] if none."""
        segments: list[Segment] = []
        budget = self.batch_bytes
        while budget > 0:
            if self.current is None and not self._open_next():
                break
            cur = self.current
            assert cur is not None
            seg = self._read_lines(cur, budget, final=False)
            if seg is not None:
                segments.append(seg)
                budget -= len(seg.data)
                if budget <= 0:
                    break
            if self._is_live(cur):
                break  # at the end of the live file: wait for more
            # Rotated away: Zeek wrote its last line and #close before the rename, so
            # what is left (a last line without newline included) is the whole rest.
            seg = self._read_lines(cur, budget, final=True)
            if seg is not None:
                segments.append(seg)
                budget -= len(seg.data)
            if cur.handle is not None and cur.partial == b"" and self._at_eof(cur):
                self._finish(cur)
        return segments

    def lag_bytes(self) -> int:
        """Bytes of the file being read that are not read yet (rotated files still queued not counted)."""
        cur = self.current
        if cur is None:
            try:
                return os.stat(self.live).st_size
            except OSError:
                return 0
        try:
            size = os.fstat(cur.handle.fileno()).st_size if cur.handle and not cur.compressed else cur.offset
        except (OSError, ValueError):
            size = cur.offset
        return max(0, size - cur.offset - len(cur.partial)) + len(cur.partial)

    def behind(self) -> bool:
        """Whether lines are already waiting past what :meth:`read` gave: more of the file being read, or
        a rotated file still being read (the live file is then elsewhere)."""
        cur = self.current
        if cur is None or cur.handle is None or cur.compressed:
            return False
        return not self._is_live(cur) or self.lag_bytes() > len(cur.partial)

    def close(self) -> None:
        if self.current is not None and self.current.handle is not None:
            self.current.handle.close()
            self.current.handle = None

    # ------------------------------------------------------------------ internals
    def _read_lines(self, cur: TrackedFile, budget: int, final: bool) -> Segment | None:
        handle = cur.handle
        assert handle is not None
        if not cur.compressed:
            size = os.fstat(handle.fileno()).st_size
            if size < cur.offset + len(cur.partial) or not self._same_start(cur):
                self._truncated(cur, size)
        chunk = self._read_chunk(cur, budget)
        if cur.skipping:  # the rest of an over-long line: dropped, never held
            nl = chunk.find(b"\n")
            cur.offset += len(chunk) if nl < 0 else nl + 1
            if nl < 0:
                return None
            cur.line += 1
            cur.skipping = False
            chunk = chunk[nl + 1 :]
        buf = cur.partial + chunk
        if not buf:
            return None
        cut = buf.rfind(b"\n") + 1
        if final and not chunk and cut < len(buf):
            data, cur.partial = buf, b""  # the rotated file's last line, cut short
        else:
            data, cur.partial = buf[:cut], buf[cut:]
        if len(cur.partial) > MAX_LINE_BYTES:  # a line with no end in sight: rejected now, then skipped
            head, cur.partial = cur.partial[:200], b""
            lines_before = data.count(b"\n")
            self.on_event("line_too_long", {"file": cur.path, "line": cur.line + lines_before + 1, "head": head})
            cur.skipping = True
            skipped = len(buf) - cut
        else:
            skipped = 0
        if not data:
            cur.offset += skipped
            return None
        first_line = cur.line + 1
        if cur.parser is None:
            cur.parser = self.make_parser(cur.path, data)
            if cur.header is not None and hasattr(cur.parser, "header"):
                cur.parser.header = LogHeader(**cur.header)
        cur.offset += len(data) + skipped
        cur.line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        self._refresh_fingerprint(cur)
        if not data.endswith(b"\n"):
            data += b"\n"  # a last line cut short goes to the parser as a whole line (to be judged)
        return Segment(cur, data, first_line, final and not cur.partial)

    def _read_chunk(self, cur: TrackedFile, budget: int) -> bytes:
        """Up to ``budget`` bytes; of a gzip, what decompresses before a corruption (reported once)."""
        handle = cur.handle
        assert handle is not None
        if not cur.compressed:
            return handle.read(budget)
        if cur.corrupt:
            return b""
        parts: list[bytes] = []
        got = 0
        try:
            while got < budget:
                part = handle.read1(min(budget - got, 1 << 16))  # type: ignore[attr-defined]
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except GZIP_ERRORS as e:
            self._corrupt(cur, cur.offset + len(cur.partial) + got, e)
        return b"".join(parts)

    def _corrupt(self, cur: TrackedFile, offset: int, error: BaseException) -> None:
        cur.corrupt = True
        self.on_event(
            "file_corrupt",
            {
                "file": cur.path,
                "offset": offset,
                "message": f"{cur.path}: the gzip breaks off after {offset} uncompressed bytes "
                f"({type(error).__name__}: {error}): what came before is scored, the rest cannot be read",
            },
        )

    def _at_eof(self, cur: TrackedFile) -> bool:
        handle = cur.handle
        assert handle is not None
        if cur.compressed:
            if cur.corrupt:
                return True
            try:
                return handle.peek(1) == b"" if hasattr(handle, "peek") else True  # type: ignore[attr-defined]
            except GZIP_ERRORS as e:
                self._corrupt(cur, cur.offset + len(cur.partial), e)
                return True
        return os.fstat(handle.fileno()).st_size <= cur.offset

    def _same_start(self, cur: TrackedFile) -> bool:
        """Whether the file still begins as it did: copytruncate followed by new writes
        past our offset keeps the size growing, but not the first bytes (the ``#open`` line)."""
        if not cur.fp_len or cur.handle is None:
            return True
        return _hash(os.pread(cur.handle.fileno(), cur.fp_len, 0)) == cur.fp_hash

    def _truncated(self, cur: TrackedFile, size: int) -> None:
        self.on_event(
            "file_truncated",
            {
                "file": cur.path,
                "offset": cur.offset,
                "size": size,
                "message": f"{cur.path} shrank from {cur.offset} to {size} bytes (copytruncate?): reading it "
                "again from the start; lines written after our last read and before the truncation are lost",
            },
        )
        assert cur.handle is not None
        cur.handle.seek(0)
        cur.offset = 0
        cur.line = 0
        cur.partial = b""
        cur.parser = None
        cur.header = None
        cur.fp_len, cur.fp_hash = 0, ""

    def _is_live(self, cur: TrackedFile) -> bool:
        try:
            st = os.stat(self.live)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (cur.dev, cur.ino)

    def _finish(self, cur: TrackedFile) -> None:
        self._refresh_fingerprint(cur)
        if cur.handle is not None:
            cur.handle.close()
            cur.handle = None
        self.on_event("file_done", {"file": cur.path, "lines": cur.line, "bytes": cur.offset})
        self._finish_record(cur.fp_hash, cur.open_key)
        self.current = None

    def _finish_record(self, fp_hash: str, key: float) -> None:
        if fp_hash:
            self.finished.append(fp_hash)
            del self.finished[:-FINISHED_KEPT]
        self.last_open_key = key if self.last_open_key is None else max(self.last_open_key, key)

    def _open_next(self, first: bool = False) -> bool:
        """Open the next file of the stream: a rotated file not read yet, else the live file."""
        nxt = None if first else self._next_rotated()
        if nxt is None:
            try:
                st = os.stat(self.live)
            except OSError:
                return False
            head = _head(self.live)
            if not head:
                return False  # nothing written yet: wait for the header
            if _hash(head) in self.finished:
                return False
            nxt = (self.live, st, head)
        path, st, head = nxt
        # Known by its first bytes from the start (the header, with its #open time), so that a
        # checkpoint taken before any line of it was read still finds it after a rotation.
        cur = TrackedFile(path=path, dev=st.st_dev, ino=st.st_ino, open_key=open_key(path, head))
        cur.fp_len, cur.fp_hash = len(head), _hash(head)
        self._attach(cur, skip=0)
        if first and self.from_end and path == self.live:
            self._skip_to_end(cur)
        self.current = cur
        self.on_event("file_open", {"file": path, "offset": cur.offset})
        return True

    def _next_rotated(self) -> tuple[str, os.stat_result, bytes] | None:
        candidates: list[tuple[float, float, str, os.stat_result, bytes]] = []
        for path in self._rotated_files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            head = _head(path)
            # A finished file is known by the sha256 of its first (up to 4096) bytes; a
            # rotated, moved or gzipped copy has the same first bytes.
            if not head or _hash(head) in self.finished:
                continue
            key = open_key(path, head)
            if self.last_open_key is not None and key < self.last_open_key:
                continue
            candidates.append((key, st.st_mtime, path, st, head))
        if not candidates:
            return None
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        _, _, path, st, head = candidates[0]
        return path, st, head

    def _rotated_files(self) -> list[str]:
        seen: set[str] = set()
        out: list[str] = []
        directories = [d for entry in self.rotated_dirs for d in sorted(glob.glob(entry)) if os.path.isdir(d)]
        for directory in directories:
            for pattern in rotated_patterns(self.live):
                for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
                    real = os.path.abspath(path)
                    if real != self.live and real not in seen and os.path.isfile(real):
                        seen.add(real)
                        out.append(real)
        return out

    def _find(self, saved: dict[str, Any]) -> str | None:
        """Where the checkpointed file is now: the file whose first bytes are its first bytes.

        The live path first, the rotated files listed after: a rotation renames the live file before it
        makes the next one, so when the live path holds another file the rename is done and the listing
        that follows shows it. Looked for twice: a rotated file may move on (log-queue to archive) while
        the directories are listed.
        """
        fp_len, fp_hash = int(saved.get("fp_len", 0)), saved.get("fp_hash", "")

        def same(path: str) -> bool:
            try:
                head = _head(path, fp_len) if os.path.isfile(path) else b""
            except OSError:  # gone since it was listed (gzipped into the archive, removed)
                return False
            return len(head) == fp_len and _hash(head) == fp_hash

        for _ in range(2):
            for path in dict.fromkeys([self.live, saved["path"]]):
                if same(path):
                    return path
            for path in self._rotated_files():
                if same(path):
                    return path
        return None

    def _attach(self, cur: TrackedFile, skip: int) -> None:
        handle = open_binary(cur.path)
        compressed = isinstance(handle, gzip.GzipFile)
        cur.handle, cur.compressed = handle, compressed
        if skip:
            if compressed:
                left = skip
                try:
                    while left:
                        got = handle.read(min(left, 1 << 20))
                        if not got:
                            break
                        left -= len(got)
                except GZIP_ERRORS as e:
                    self._corrupt(cur, skip - left, e)
            else:
                handle.seek(skip)
        self._refresh_fingerprint(cur)

    def _skip_to_end(self, cur: TrackedFile) -> None:
        """``--from-end``: read the header, skip the rows already there."""
        assert cur.handle is not None
        size = os.fstat(cur.handle.fileno()).st_size
        data = cur.handle.read(size)
        cut = data.rfind(b"\n") + 1
        data = data[:cut]
        cur.handle.seek(cut)
        header_end = 0
        for line in data.splitlines(keepends=True):
            if not line.startswith(b"#"):
                break
            header_end += len(line)
        if header_end:
            cur.parser = self.make_parser(cur.path, data[:header_end])
            list(cur.parser.feed(data[:header_end], 1, final=False))
        cur.offset = cut
        cur.line = data.count(b"\n")
        self._refresh_fingerprint(cur)

    def _refresh_fingerprint(self, cur: TrackedFile) -> None:
        want = min(cur.offset, FINGERPRINT_BYTES)
        if cur.fp_len >= want and cur.fp_hash:
            return
        head = _head(cur.path, want) if cur.compressed or cur.handle is None else os.pread(cur.handle.fileno(), want, 0)
        cur.fp_len, cur.fp_hash = len(head), _hash(head)
