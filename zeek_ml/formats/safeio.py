"""Safe output files: what zeek-ml writes never lands through a planted link or over its own input.

This module owns how zeek-ml creates the files it writes whole (``score``'s notice log, ``--all``
and ``--rejects``; ``calibrate``'s site profile; the watcher's checkpoint and the broker's state,
through :func:`zeek_ml.formats.safeio.write_json_atomic`):

- :class:`AtomicOutput`: the bytes go to a temporary file in the target's directory, created
  with ``O_CREAT|O_EXCL|O_NOFOLLOW`` under an unpredictable name (``.NAME.<random>.tmp``, mode
  0o644 less the umask, or the mode of the file it replaces), and :meth:`~AtomicOutput.commit`
  renames it into place (after ``fsync``) only when the run succeeded; :meth:`~AtomicOutput.discard`
  removes it. A reader sees the old file or the whole new one, never a torn or half-written one,
  and a failed run leaves nothing at the target that looks complete. The rename replaces the
  name, so a symlink or hard link put there never gets its target overwritten.
- :func:`open_output`: the output a user names: ``-`` (stdout), an existing character device
  or FIFO (``/dev/null``, a named pipe) or a link to the process's own stdout/stderr
  (``/dev/stdout``) are streamed to as they are; anything else is an :class:`AtomicOutput`
  (or, for a log read while it is written, a file opened in place with ``O_NOFOLLOW``). A
  symbolic link (other than to our own stdout/stderr), a directory or another special file at
  the target is refused.
- :func:`check_outputs`: refuse an output that is one of the inputs (same device and inode,
  hard links and ``-`` redirected from a file included) or two outputs naming the same file.
- :class:`OutputError`: every refusal and every I/O failure (missing or unwritable directory,
  read-only file system, disk full, permission), an :class:`OSError` whose ``filename`` is the
  output the user named and whose ``strerror`` says why in words: the CLI prints it as one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Mapping
from typing import IO, Any

PathLike = str | os.PathLike[str]

NEW_FILE_MODE = 0o644
"""Mode of a new output before the umask (what Zeek's own logs get)."""


class OutputError(OSError):
    """An output that cannot or must not be written: ``filename`` is the output, ``strerror`` the reason."""

    def __init__(self, code: int, reason: str, path: PathLike):
        super().__init__(code, reason, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _cause(e: OSError) -> str:
    return e.strerror or str(e)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError as e:
        raise OutputError(errno.ENOTDIR, "cannot write: a component of the path is not a directory", path) from e
    except OSError as e:
        raise OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}", path) from e


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _fd_stat(fd: int) -> os.stat_result | None:
    try:
        return os.fstat(fd)
    except OSError:
        return None


class AtomicOutput:
    """A regular file written under a temporary name beside ``path`` and renamed into place on :meth:`commit`.

    Refuses (:class:`OutputError`) a ``path`` that is a symbolic link, a directory or another
    special file, an existing file it may not write, and a directory that is missing or not
    writable; write errors (disk full) are :class:`OutputError` naming ``path``. Binary
    file-like (``write``/``flush``), so a :class:`~zeek_ml.formats.writer.ZeekLogWriter`, an eve
    alert writer or a :class:`~zeek_ml.sources.reading.RejectLog` writes to it. As a context manager it
    commits on success and discards on an exception.
    """

    is_stdout = False

    def __init__(self, path: PathLike):
        self.path = os.fspath(path)
        directory, name = os.path.split(os.path.abspath(self.path))
        if not name or self.path.endswith(os.sep):
            raise OutputError(errno.EISDIR, "is a directory, not a file name", self.path)
        existing = _lstat(self.path)
        mode: int | None = None
        if existing is not None:
            _refuse_special(existing, self.path)
            if not os.access(self.path, os.W_OK, follow_symlinks=False):
                raise _not_writable(self.path, directory)
            mode = stat.S_IMODE(existing.st_mode) & 0o777
        self.name = name
        self._dir_fd = _open_dir(directory, self.path)
        try:
            self.temp_name, fd = _create_temp(self._dir_fd, name, directory, self.path)
        except BaseException:
            os.close(self._dir_fd)
            raise
        if existing is not None:
            # keep the replaced file's permissions (and, as root, its owner) rather than widening them
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)  # type: ignore[arg-type]
            if os.geteuid() == 0 and (existing.st_uid, existing.st_gid) != (0, 0):
                with contextlib.suppress(OSError):
                    os.fchown(fd, existing.st_uid, existing.st_gid)
        self._file: IO[bytes] | None = open(fd, "wb", closefd=True)  # noqa: SIM115
        self.done = False

    # ------------------------------------------------------------------ file-like
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` to the temporary file."""
        if self._file is None:
            raise ValueError(f"{self.path}: output already committed or discarded")
        try:
            return self._file.write(data)
        except OSError as e:
            raise self._error(e) from e

    def flush(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as e:
            raise self._error(e) from e

    def writable(self) -> bool:
        return self._file is not None

    def _error(self, e: OSError) -> OutputError:
        return OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}; nothing was written there", self.path)

    # ------------------------------------------------------------------ end
    def prepare(self) -> None:
        """Make the temporary file durable (flush, fsync, close), so that :meth:`commit` only renames:
        a caller with several outputs prepares them all, then commits them all, and a failure (a full
        disk or quota at the fsync) replaces none of them. On failure: removed, OutputError."""
        if self.done or self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        except OSError as e:
            self.discard()
            raise self._error(e) from e

    def commit(self) -> None:
        """Make the file durable and rename it into place; on any failure remove it and raise OutputError."""
        if self.done:
            return
        self.prepare()
        try:
            os.replace(self.temp_name, self.name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except OSError as e:
            self.discard()
            if e.errno == errno.EISDIR:
                raise OutputError(e.errno, "is a directory", self.path) from e
            raise self._error(e) from e
        with contextlib.suppress(OSError):
            os.fsync(self._dir_fd)  # the rename itself durable
        self._finish()

    def discard(self) -> None:
        """Remove the temporary file; the target is left as it was. Never raises."""
        if self.done:
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            os.unlink(self.temp_name, dir_fd=self._dir_fd)
        self._finish()

    def _finish(self) -> None:
        self.done = True
        with contextlib.suppress(OSError):
            os.close(self._dir_fd)

    def close(self) -> None:
        """Same as :meth:`commit` (what a writer that owns its file calls at the end)."""
        self.commit()

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def __del__(self) -> None:  # a writer dropped without commit leaves no temp file behind
        if not getattr(self, "done", True):
            self.discard()


class StreamOutput:
    """An output streamed as it is written (stdout, ``/dev/null``, a FIFO): nothing to rename."""

    def __init__(self, stream: IO[bytes], path: str, *, is_stdout: bool = False, own: bool = False):
        self.stream = stream
        self.path = path
        self.is_stdout = is_stdout
        self._own = own
        self.done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self.stream.write(data)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}", self.path) from e

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}", self.path) from e

    def writable(self) -> bool:
        return not self.done

    def prepare(self) -> None:
        """Flush what is left (a stream has nothing to make durable apart)."""
        if not self.done:
            self.flush()

    def commit(self) -> None:
        """Flush what is left (and close a device or FIFO we opened)."""
        if self.done:
            return
        self.flush()
        self.discard()

    def discard(self) -> None:
        """Stop writing; what was streamed stays streamed."""
        if self.done:
            return
        self.done = True
        if self._own:
            with contextlib.suppress(OSError):
                self.stream.close()

    def close(self) -> None:
        self.commit()


Output = AtomicOutput | StreamOutput


def _refuse_special(st: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(
            errno.ELOOP,
            "is a symbolic link; zeek-ml does not write through links (name the file itself, or '-' for stdout)",
            path,
        )
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(errno.EISDIR, "is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(errno.EINVAL, "is not a regular file (a device or socket); refusing to write to it", path)


def _not_writable(path: str, directory: str) -> OutputError:
    """Why an existing file may not be replaced: its file system is read-only, or the file is."""
    with contextlib.suppress(OSError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return OutputError(errno.EROFS, "cannot write: Read-only file system", path)
    return OutputError(errno.EACCES, "cannot write: the file is read-only or immutable (Permission denied)", path)


def _open_dir(directory: str, path: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise OutputError(errno.ENOENT, f"cannot write: directory {directory} does not exist", path) from e
    except NotADirectoryError as e:
        raise OutputError(errno.ENOTDIR, f"cannot write: {directory} is not a directory", path) from e
    except OSError as e:
        raise OutputError(e.errno or errno.EIO, f"cannot write in {directory}: {_cause(e)}", path) from e


def _create_temp(dir_fd: int, name: str, directory: str, path: str) -> tuple[str, int]:
    """A new, empty ``.NAME.<random>.tmp`` in the directory: never an existing file, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        temp = temp_name(name)
        try:
            return temp, os.open(temp, flags, NEW_FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            continue  # taken (by a planted file or link too): draw another name
        except OSError as e:
            raise OutputError(e.errno or errno.EIO, f"cannot write in {directory}: {_cause(e)}", path) from e
    raise OutputError(errno.EEXIST, f"cannot write in {directory}: no free temporary name", path)


def temp_name(name: str) -> str:
    """A temporary name for ``name`` in its directory: hidden, unpredictable (64 random bits), ``.tmp``."""
    return f".{name}.{secrets.token_hex(8)}.tmp"


def open_output(path: PathLike, *, atomic: bool = True) -> Output:
    """The output a user names: ``-`` is stdout; see the module docstring for the rest.

    ``atomic=False`` is for a log that must be readable while it is written (the broker's
    ``-o``): a regular file is then truncated and written in place, still never through a
    link, and never when it has other hard links.
    """
    path = os.fspath(path)
    if path == "-":
        return StreamOutput(sys.stdout.buffer, "-", is_stdout=True)
    st = _lstat(path)
    if st is not None and stat.S_ISLNK(st.st_mode):
        # /dev/stdout and the like: a link to the stream we already hold is that stream
        with contextlib.suppress(OSError):
            target = os.stat(path)
            for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
                mine = _fd_stat(fd)
                if mine is not None and _same(mine, target):
                    return StreamOutput(stream.buffer, path, is_stdout=fd == 1)
        _refuse_special(st, path)
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            raise OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}", path) from e
        mine = _fd_stat(1)
        return StreamOutput(open(fd, "wb"), path, is_stdout=mine is not None and _same(mine, st), own=True)
    if atomic:
        return AtomicOutput(path)
    return _open_in_place(path, st)


def _open_in_place(path: str, st: os.stat_result | None) -> StreamOutput:
    """A regular file truncated and written as it goes: O_NOFOLLOW, and not a file with other names."""
    if st is not None:
        _refuse_special(st, path)
        if st.st_nlink > 1:
            raise OutputError(errno.EMLINK, "has other hard links; refusing to truncate it", path)
    directory = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, NEW_FILE_MODE)
    except FileNotFoundError as e:
        raise OutputError(errno.ENOENT, f"cannot write: directory {directory} does not exist", path) from e
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link planted since the check
            _refuse_special(os.lstat(path), path)
        raise OutputError(e.errno or errno.EIO, f"cannot write: {_cause(e)}", path) from e
    return StreamOutput(open(fd, "wb"), path, own=True)


def write_atomic(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole (temp file, fsync, rename): a reader or a crash sees old or new."""
    with AtomicOutput(path) as out:
        out.write(data)


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any], *, indent: int | None = None) -> None:
    """Write ``data`` to ``path`` so a reader (or a crash) sees the old file or the new, never a mix.

    Compact with sorted keys (checkpoints), or with ``indent`` for people: keys in their order, a final newline.
    Written by :func:`write_atomic`: an unpredictable ``O_EXCL|O_NOFOLLOW`` temp file beside
    ``path``, fsync, rename; a symbolic link at ``path`` is refused (:class:`OutputError`).
    """
    if indent is None:
        payload = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    else:
        payload = (json.dumps(data, indent=indent) + "\n").encode()
    write_atomic(path, payload)


def check_outputs(outputs: Mapping[str, PathLike | None], inputs: Iterable[PathLike]) -> None:
    """Refuse an output that is also an input, or a file (or stdout) two outputs both name.

    ``outputs`` maps an option (``-o``, ``--all``...) to its path (None: not asked for); ``inputs``
    are files (``-``: stdin, compared when it is redirected from a file). Files are compared by
    device and inode, so another name, a hard link or a link to an input is caught.
    """
    seen: dict[tuple[int, int] | str, str] = {}
    input_stats: list[tuple[str, os.stat_result]] = []
    for item in inputs:
        name = os.fspath(item)
        st = _fd_stat(0) if name == "-" else None
        if name != "-":
            with contextlib.suppress(OSError):
                st = os.stat(name)
        if st is not None and stat.S_ISREG(st.st_mode):
            input_stats.append((name, st))
    for option, out in outputs.items():
        if out is None:
            continue
        path = os.fspath(out)
        if path == "-":
            key: tuple[int, int] | str = "-"
            st = _fd_stat(1)  # stdout redirected into an input (``>> conn.log``) would feed the run itself
            if st is not None and stat.S_ISREG(st.st_mode):
                for name, ist in input_stats:
                    if _same(st, ist):
                        raise OutputError(
                            errno.EEXIST, f"stdout is redirected into this input; refusing to write it ({option})", name
                        )
        else:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                for name, ist in input_stats:
                    if _same(st, ist):
                        also = "" if name == path else f" ({'stdin' if name == '-' else name})"
                        raise OutputError(
                            errno.EEXIST, f"is also an input{also}; refusing to overwrite it ({option})", path
                        )
                key = (st.st_dev, st.st_ino)
            else:
                key = os.path.abspath(path)
        if key in seen:
            where = "stdout" if key == "-" else "the same file"
            raise OutputError(errno.EEXIST, f"{seen[key]} and {option} both write to {where}", path)
        seen[key] = option
