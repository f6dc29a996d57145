"""Record files on disk: tolerant reading, atomic locked appends, atomic rewrites.

Why each piece:

* **Reading never fails on one bad line.**  A process killed mid-write leaves a truncated last
  line; a hand edit can break any line.  Such a line is reported (``RecordWarning`` naming
  file and line, and in ``FileContents.problems``) and skipped; every other record stays usable.
* **Appends are atomic under a lock.**  All lines of one append are written with a single
  ``write`` on an ``O_APPEND`` descriptor while holding an exclusive ``fcntl`` lock on a
  sibling ``.lock`` file, so two processes tuning at once interleave whole records, never
  bytes, and the header is written exactly once (by whoever finds the file empty).
* **Rewrites (merge, prune) are atomic too**: a temporary file in the same directory, fsync,
  ``os.replace``, under the same lock, so an appender never writes into a file being replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import Record, RecordError, check_header, make_header


class RecordWarning(UserWarning):
    """A record line or file that was skipped; the message names the file, line and reason."""


@dataclass(frozen=True)
class Problem:
    """One unusable line (``line`` 0 means the whole file)."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"


@dataclass
class FileContents:
    path: Path
    header: dict[str, Any] | None
    records: list[tuple[int, Record]] = field(default_factory=list)  # (line number, record)
    problems: list[Problem] = field(default_factory=list)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive lock for writers of ``path`` (a sibling ``<name>.lock`` file, never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_file(path: Path, warn: bool = True) -> FileContents:
    """Header and records of one file; bad lines become ``problems`` (and warnings)."""
    out = FileContents(Path(path), None)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        out.problems.append(Problem(str(path), 0, f"cannot be read ({exc.strerror})"))
        return _warned(out, warn)
    lines = raw.split(b"\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            what = "truncated" if n == len(lines) else "corrupted"
            out.problems.append(Problem(str(path), n, f"{what} line skipped (not JSON: {exc})"))
            continue
        if out.header is None:
            try:
                out.header = check_header(data)
            except RecordError as exc:
                out.problems.append(Problem(str(path), n, f"file skipped: {exc}"))
                return _warned(out, warn)
            continue
        try:
            out.records.append((n, Record.from_dict(data)))
        except RecordError as exc:
            out.problems.append(Problem(str(path), n, f"invalid record skipped: {exc}"))
    return _warned(out, warn)


def _warned(contents: FileContents, warn: bool) -> FileContents:
    if warn:
        for p in contents.problems:
            warnings.warn(str(p), RecordWarning, stacklevel=3)
    return contents


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def append(path: Path, records: Sequence[Record], versions: dict[str, str] | None = None) -> None:
    """Append ``records`` to ``path`` atomically; a new file gets a header first.

    Raises RecordError when ``path`` exists with a header of other versions: records are only
    ever appended under the header that describes the process writing them.
    """
    path = Path(path)
    header = make_header(versions)
    with locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            chunks = []
            size = os.fstat(fd).st_size
            if size == 0:
                chunks.append(json.dumps(header, sort_keys=True))
            else:
                existing = read_file(path, warn=False).header
                if existing is None or existing.get("versions") != header["versions"]:
                    raise RecordError(f"{path} was written by other library versions; not appending to it")
                with open(path, "rb") as fh:  # a killed writer may have left a line without its newline
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        chunks.append("")
            chunks += [r.to_json() for r in records]
            _write_all(fd, ("\n".join(chunks) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def rewrite(path: Path, records: Sequence[Record], versions: dict[str, str] | None = None) -> None:
    """Replace ``path`` by a header plus ``records`` (atomic; removes the file if no records)."""
    path = Path(path)
    with locked(path):
        if not records:
            path.unlink(missing_ok=True)
            return
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            lines = [json.dumps(make_header(versions), sort_keys=True), *(r.to_json() for r in records)]
            _write_all(fd, ("\n".join(lines) + "\n").encode())
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
