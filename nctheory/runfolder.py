"""Run folders that are never corrupted or stuck: a lock, atomic writes, a checked metrics.csv, and clean
restarts.

A run folder (written by ``nctheory train``) holds

    config.json  metrics.csv  checkpoint.pt  summary.json  gram_final.npy  embeddings.npz
                                                                           the run's data (RUN_DATA_FILES)
    loss.png excess.png geometry.png collapse.png accuracy.png gram_final.png   its plots (RUN_PLOT_FILES)
    run.lock                                                               while a process trains in it
    tensorboard/                                                           event files, when asked for

Rules this module provides (the trainer and every command call them; see each function):

- **One writer.** :class:`RunLock` holds ``run.lock`` with ``fcntl.flock`` (the kernel drops it when the
  holder dies, so a crashed run never blocks the folder); the file records pid, host and start time
  so a second holder is told at once who has it: ``run folder X is in use by pid N on HOST``.
- **Atomic writes.** Every file is written to a temporary name in the same folder, flushed and fsynced,
  then ``os.replace``d over the target (:func:`atomic_write` and the json / csv / text / npy /
  savefig / torch wrappers): a kill leaves the old file or the new one, never a torn one.
- **A checked metrics.csv.** :func:`read_metrics_csv` accepts only what the trainer writes: a header
  with an ``epoch`` column and one row per epoch 1, 2, ..., N, each epoch a whole number in
  [1, MAX_EPOCH] (1.5 and 1e308 are refused, a duplicated or missing epoch is named).
  :func:`repair_metrics_csv` brings the file in line with a checkpoint's epoch on resume (rows after
  it and a torn last line are dropped, repeated identical rows collapsed) or refuses with the reason.
- **Only the trainer writes a run's files.** :func:`check_may_write` refuses any other command's
  output that would replace a run's data file (never allowed) or an existing file inside a run folder
  (only with ``--force``).
- **Clean restarts.** :func:`run_state` tells a new folder, one killed before its first checkpoint
  ("unstarted": it can only be restarted), a resumable and a finished run apart;
  :func:`clear_unstarted` removes exactly the files such a run wrote, nothing else.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import socket
import stat as st_mod
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from nctheory.errors import InputError

LOCK_NAME = "run.lock"
RUN_DATA_FILES = ("config.json", "metrics.csv", "checkpoint.pt", "summary.json", "gram_final.npy", "embeddings.npz")
RUN_PLOT_FILES = ("loss.png", "excess.png", "geometry.png", "collapse.png", "accuracy.png", "gram_final.png")
RUN_FILES = RUN_DATA_FILES + RUN_PLOT_FILES + (LOCK_NAME,)
# files a run writes before its first checkpoint (config.json first, then metrics.csv's header and the
# first epoch's row (with its TensorBoard events when asked for), then checkpoint.pt); a folder holding only
# these is "unstarted"
TENSORBOARD_DIR = "tensorboard"
BEFORE_FIRST_CHECKPOINT = ("config.json", "metrics.csv", "gram_final.npy", LOCK_NAME, TENSORBOARD_DIR)
MAX_EPOCH = 10**9  # the largest epoch number a metrics.csv may name (TrainConfig.epochs has the same bound)
TIMING_COLUMNS = ("epoch_seconds", "images_per_second")  # the only columns two runs of one config differ in
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # atomic_write's temporary names
_LEGACY_TMP = tuple(n + ".tmp" for n in ("checkpoint.pt", "config.json", "summary.json"))  # train.py's own


def is_run_folder(folder) -> bool:
    """A folder holding a run's config.json, metrics.csv or checkpoint.pt."""
    p = Path(folder)
    return any((p / n).is_file() for n in ("config.json", "metrics.csv", "checkpoint.pt"))


def check_may_write(path, flag: str, *, force: bool = False) -> None:
    """Refuse a command's output ``path`` that lies in a run folder and would replace one of the run's
    data files (RUN_DATA_FILES, the lock: never, not even with --force) or any existing file there
    (refused unless ``force``). Only the run's trainer (and ``nctheory plot``, which re-makes the run's
    own plots) writes there otherwise."""
    p = Path(path)
    folder = p.parent
    if not is_run_folder(folder):
        return
    if p.name in RUN_DATA_FILES or p.name == LOCK_NAME:
        raise InputError(f"{flag} {p} is the data of the run in {folder}; only its trainer writes it "
                         "(choose another file)")
    if p.exists() and not force:
        raise InputError(f"{flag} {p} would replace a file of the run in {folder}; use --force to replace it")


# ------------------------------------------------------------------------------------------ the lock
@dataclass
class LockInfo:
    pid: int | None
    host: str
    since: str


def _read_lock_file(path: Path) -> LockInfo | None:
    try:
        d = json.loads(path.read_text())
        return LockInfo(int(d["pid"]), str(d.get("host", "?")), str(d.get("since", "?")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it::

        with RunLock(out):      # InputError at once if another process holds it
            ...train...

    ``fcntl.flock`` on ``FOLDER/run.lock``: the kernel releases it when the process dies (SIGKILL, a
    crash), so a stale file never blocks; the file's content (pid, host, start time) only names the
    holder. The folder is created if missing (and removed again on release if the lock created it and
    it is empty then, so a run refused during setup leaves nothing behind). Not re-entrant: a second
    RunLock on the same folder in the same process is refused too (flock locks belong to open files)."""

    def __init__(self, folder, *, create: bool = True):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.create = create
        self._fd: int | None = None
        self._created_folder = False

    def acquire(self) -> "RunLock":
        import fcntl

        if self._fd is not None:
            raise RuntimeError("RunLock.acquire called twice")
        if not self.folder.is_dir():
            if not self.create:
                raise InputError(f"run folder {self.folder} does not exist")
            try:
                self.folder.mkdir(parents=True)
                self._created_folder = True
            except FileExistsError:
                if not self.folder.is_dir():
                    raise InputError(f"run folder {self.folder} is a file, not a folder") from None
            except OSError as exc:
                raise InputError(f"cannot create run folder {self.folder}: {exc.strerror}") from None
        for _ in range(10):  # retry when the holder unlinked the file between our open and our flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                self._undo_folder()
                raise InputError(f"cannot lock run folder {self.folder}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                info = _read_lock_file(self.path)
                who = f"pid {info.pid} on {info.host} (since {info.since})" if info else "another process"
                self._undo_folder()
                raise InputError(f"run folder {self.folder} is in use by {who}; wait for it to finish or "
                                 "use another folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
            self._fd = fd
            return self
        self._undo_folder()
        raise InputError(f"cannot lock run folder {self.folder}: the lock file keeps changing")

    def _undo_folder(self) -> None:
        if self._created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()
            self._created_folder = False

    def release(self) -> None:
        """Remove the lock file (under the lock) and release it; remove a folder the lock created if it
        is empty now."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None
        self._undo_folder()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(folder) -> LockInfo | None:
    """Who holds the folder's lock now (None when nobody: a stale run.lock of a dead process is not held)."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_lock_file(path) or LockInfo(None, "?", "?")
    finally:
        os.close(fd)
    return None


# ------------------------------------------------------------------------------------------ atomic writes
def _final_target(path: Path) -> Path:
    """Where the bytes go: a symlink is written through (its target replaced), and an existing target
    must be a regular file (os.replace over /dev/null would replace the device node)."""
    p = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return p
    if not st_mod.S_ISREG(st.st_mode):
        kind = "a folder" if st_mod.S_ISDIR(st.st_mode) else "not a regular file"
        raise InputError(f"cannot write {p}: it is {kind}")
    return p


def _temp_path(target: Path) -> tuple[Path, int]:
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            # 0o666 & ~umask, like an ordinary open(): the replaced file keeps the usual permissions
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise OSError(f"no free temporary name next to {target}")


def atomic_write(path, write: Callable, *, binary: bool = True, fsync: bool = True) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file in the same folder (opened "wb" or,
    with ``binary=False``, "w" with newline=""), which is flushed, fsynced and then ``os.replace``d over
    ``path``; the folder is fsynced. On any error the temporary file is removed and ``path`` is left as
    it was. An OSError becomes InputError("cannot write PATH: reason"). Returns the path written."""
    target = _final_target(Path(path))
    try:
        tmp, fd = _temp_path(target)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")) as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InputError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    if fsync:
        with contextlib.suppress(OSError):
            dfd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return target


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_write_json(path, obj, **dumps_kw) -> Path:
    """json.dumps(obj, indent=2, **dumps_kw) + newline, atomically (serialised first: a value json cannot
    write leaves the file untouched)."""
    dumps_kw.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **dumps_kw) + "\n")


def atomic_write_csv(path, fieldnames: Iterable[str], rows: Iterable[dict]) -> Path:
    """A CSV with a header and one line per row dict (missing keys empty), atomically."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def atomic_save_npy(path, array) -> Path:
    """numpy.save of ``array`` (no pickles) to exactly ``path``, atomically."""
    import numpy as np

    arr = np.asarray(array)
    return atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def atomic_savefig(fig, path, **savefig_kw) -> Path:
    """``fig.savefig`` to ``path`` atomically, in the format its extension names (.png, .pdf, .svg)."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if not fmt:
        raise InputError(f"cannot write {path}: no file extension to choose the image format")
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kw))


def atomic_torch_save(obj, path) -> Path:
    """torch.save(obj) to ``path`` atomically (a checkpoint)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


# ------------------------------------------------------------------------------------------ metrics.csv
@dataclass
class MetricsCheck:
    """A metrics.csv as read: its header, its rows (raw strings) in epoch order 1..N, and what a repair
    dropped (empty when nothing was)."""

    path: Path
    header: list[str]
    rows: list[dict] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> list[int]:
        return [int(r["epoch"]) for r in self.rows]

    @property
    def last_epoch(self) -> int:
        return int(self.rows[-1]["epoch"]) if self.rows else 0


def parse_epoch(value, where: str) -> int:
    """An epoch number as the trainer writes it: a whole number in [1, MAX_EPOCH] ("3"; "3.0" is taken
    as 3; "1.5", "1e308", "inf", "" are refused)."""
    s = "" if value is None else str(value).strip()
    if re.fullmatch(r"[+]?\d+", s):
        e = int(s)
    else:
        try:
            f = float(s)
        except ValueError:
            raise InputError(f"{where}: epoch {s!r} is not a number") from None
        if not (f == f and abs(f) != float("inf") and f.is_integer() and 1 <= f <= MAX_EPOCH):
            raise InputError(f"{where}: epoch {s!r} is not an epoch number (a whole number from 1 to {MAX_EPOCH})")
        e = int(f)
    if not 1 <= e <= MAX_EPOCH:
        raise InputError(f"{where}: epoch {s!r} is not an epoch number (a whole number from 1 to {MAX_EPOCH})")
    return e


def _epoch_ranges(eps: list[int]) -> str:
    out, i = [], 0
    while i < len(eps):
        j = i
        while j + 1 < len(eps) and eps[j + 1] == eps[j] + 1:
            j += 1
        out.append(f"{eps[i]}" if i == j else f"{eps[i]}-{eps[j]}")
        i = j + 1
    return ", ".join(out)


def _read_csv(path: Path, name: str):
    """(header, [(line_no, row dict)], torn_last): torn_last is the last line when the file does not end in
    a newline (the trainer ends every row with one, so that line is a write cut short by a kill)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror}") from None
    if st_mod.S_ISDIR(st.st_mode):
        raise InputError(f"{name} is a folder, not a file")
    if st.st_size > 2**30:
        raise InputError(f"{name} is {st.st_size / 1e9:.1f} GB; not a metrics file written by nctheory train")
    try:
        data = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text: not a metrics file written by nctheory train") from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}") from None
    if "\x00" in data:
        raise InputError(f"{name} holds NUL bytes: not a metrics file written by nctheory train")
    try:
        lines = list(csv.reader(io.StringIO(data, newline="")))
    except csv.Error as exc:
        raise InputError(f"{name} is not a CSV file ({exc})") from None
    if not lines or not any(c.strip() for c in lines[0]):
        return None, [], None
    header = [c.strip() for c in lines[0]]
    body = [(i + 2, r) for i, r in enumerate(lines[1:]) if r]
    torn = None
    if body and not data.endswith(("\n", "\r")):
        torn = body.pop()
    rows = []
    for line, r in body:
        if len(r) != len(header):
            raise InputError(f"{name} line {line} has {len(r)} fields, the header {len(header)}")
        rows.append((line, dict(zip(header, r))))
    return header, rows, torn


def _check_header(name, header, checkpoint_epoch, fieldnames):
    """The header of a metrics file: present, with an ``epoch`` column, no repeated column, and (resume)
    no column the trainer does not write."""
    if header is None:
        if checkpoint_epoch:
            raise InputError(f"{name} is empty but the checkpoint is at epoch {checkpoint_epoch}; the run cannot "
                             "be resumed: start it again in a new folder")
        raise InputError(f"{name} is empty: not a metrics file written by nctheory train")
    if "epoch" not in header:
        raise InputError(f"{name} has no 'epoch' column: not a metrics file written by nctheory train")
    if len(set(header)) != len(header):
        dup = sorted({c for c in header if header.count(c) > 1})
        raise InputError(f"{name} repeats the column(s) {', '.join(dup)} in its header")
    if fieldnames is not None:
        extra = [c for c in header if c not in set(fieldnames)]
        if extra:
            raise InputError(f"{name} has column(s) {', '.join(extra)} that the trainer does not write")


def _one_row_per_epoch(name, header, parsed, *, resuming, ignore, dropped):
    """Rows ``(line, epoch, row)`` checked to be epochs 1, 2, ... in order; on resume (``resuming``) a row
    repeated with the same values (``ignore`` apart) is kept once and noted in ``dropped``."""
    kept, seen = [], {}
    for line, e, r in parsed:
        if e in seen:
            first_line, first = seen[e]
            same = all(first.get(c) == r.get(c) for c in header if c not in ignore)
            if resuming and same:  # the same epoch computed twice: keep it once
                dropped.append(f"a repeat of epoch {e}'s row (line {line})")
                continue
            raise InputError(f"{name}: epoch {e} appears twice (lines {first_line} and {line})"
                             + ("" if same else " with different values") + "; two runs may have written "
                             "this folder")
        expected = len(kept) + 1
        if e != expected:
            why = f"epoch(s) {_epoch_ranges(list(range(expected, e)))} missing" if e > expected else \
                f"after epoch {expected - 1}"
            raise InputError(f"{name} line {line} has epoch {e} ({why}); a metrics file has one row per epoch "
                             "from 1")
        seen[e] = (line, r)
        kept.append({**r, "epoch": str(e)})  # the canonical spelling ("2.0" -> "2")
    return kept


def read_metrics_csv(path, *, checkpoint_epoch: int | None = None, fieldnames: Iterable[str] | None = None,
                     ignore_on_duplicate: Iterable[str] = TIMING_COLUMNS) -> MetricsCheck:
    """Read and check a run's metrics.csv (no writes). Without ``checkpoint_epoch``: what a reader of a
    run (plot, compare) accepts: a header with an ``epoch`` column, at least one row, epochs exactly
    1, 2, ..., N in order (a torn last line of a live or killed run is dropped and reported in
    ``dropped``). With ``checkpoint_epoch`` E (resume): rows after E are dropped, a row repeated with the
    same values (``ignore_on_duplicate`` apart) is kept once, and the rest must be exactly epochs 1..E;
    ``fieldnames`` (the trainer's columns): a column it does not write is refused, a missing one is
    filled empty. Anything else: InputError with the reason."""
    path = Path(path)
    name = str(path)
    fieldnames = None if fieldnames is None else list(fieldnames)
    header, rows, torn = _read_csv(path, name)
    dropped = []
    if torn is not None:
        dropped.append(f"a torn last line (line {torn[0]})")
    _check_header(name, header, checkpoint_epoch, fieldnames)
    parsed = [(line, parse_epoch(r["epoch"], f"{name} line {line}"), r) for line, r in rows]
    if checkpoint_epoch is not None:
        E = int(checkpoint_epoch)
        after = [e for _, e, _ in parsed if e > E]
        if after:
            dropped.append(f"row(s) for epoch(s) {_epoch_ranges(sorted(set(after)))} after the checkpoint's "
                           f"epoch {E}")
        parsed = [t for t in parsed if t[1] <= E]
    kept = _one_row_per_epoch(name, header, parsed, resuming=checkpoint_epoch is not None,
                              ignore=set(ignore_on_duplicate), dropped=dropped)
    if checkpoint_epoch is not None:
        E = int(checkpoint_epoch)
        if len(kept) < E:
            have = f"rows for epochs 1-{len(kept)}" if kept else "no rows"
            raise InputError(f"{name} has {have} but the checkpoint is at epoch {E} (epoch(s) "
                             f"{_epoch_ranges(list(range(len(kept) + 1, E + 1)))} missing); the run cannot be "
                             "resumed: start it again in a new folder")
    elif not kept:
        raise InputError(f"{name} holds no epoch yet")
    if fieldnames is not None:
        kept = [{c: r.get(c, "") for c in fieldnames} for r in kept]
        if header != fieldnames:
            dropped.append("the header rewritten to the trainer's columns")
        header = fieldnames
    return MetricsCheck(path, header, kept, dropped)


def repair_metrics_csv(path, checkpoint_epoch: int, *, fieldnames: Iterable[str] | None = None,
                       ignore_on_duplicate: Iterable[str] = TIMING_COLUMNS) -> MetricsCheck:
    """On resume: :func:`read_metrics_csv` with the checkpoint's epoch, and, when it dropped anything, the
    kept rows written back atomically. A missing file with a checkpoint at epoch E >= 1 is refused."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} is missing but the checkpoint is at epoch {checkpoint_epoch}; the run cannot be "
                         "resumed: start it again in a new folder")
    chk = read_metrics_csv(path, checkpoint_epoch=checkpoint_epoch, fieldnames=fieldnames,
                           ignore_on_duplicate=ignore_on_duplicate)
    if chk.dropped:
        atomic_write_csv(path, chk.header, chk.rows)
    return chk


# ------------------------------------------------------------------------------------------ restarts
@dataclass
class RunState:
    """What a run folder holds. kind: "new" (absent or empty), "unstarted" (only files a run writes before
    its first checkpoint: killed before it, or refused; it can only be restarted), "resumable" (a
    checkpoint, no summary), "finished" (summary.json), or "other" (no checkpoint, and files no run
    killed that early would leave: not safe to clear). ``entries``: the names in the folder."""

    kind: str
    folder: Path
    entries: list[str]
    reason: str = ""


def _is_temp(name: str) -> bool:
    return bool(_TMP_RE.match(name)) or name in _LEGACY_TMP


def _metrics_rows_upto_1(path: Path) -> bool:
    """metrics.csv holds at most the first epoch's row (or only a header, or nothing)."""
    try:
        header, rows, _torn = _read_csv(path, str(path))
    except InputError:
        return False
    if header is None:
        return True
    try:
        return all(parse_epoch(r.get("epoch"), str(path)) == 1 for _, r in rows) and len(rows) <= 1
    except InputError:
        return False


def run_state(folder) -> RunState:
    """Classify ``folder`` (see :class:`RunState`); never writes."""
    p = Path(folder)
    if not p.exists():
        return RunState("new", p, [])
    if not p.is_dir():
        raise InputError(f"run folder {p} is a file, not a folder")
    try:
        entries = sorted(os.listdir(p))
    except OSError as exc:
        raise InputError(f"cannot read run folder {p}: {exc.strerror}") from None
    if not entries or entries == [LOCK_NAME]:
        return RunState("new", p, entries)
    if "summary.json" in entries:
        return RunState("finished", p, entries)
    if "checkpoint.pt" in entries:
        return RunState("resumable", p, entries)
    foreign = [e for e in entries if e not in BEFORE_FIRST_CHECKPOINT and not _is_temp(e)]
    if foreign:
        return RunState("other", p, entries, f"it holds {', '.join(foreign[:5])}, which no unstarted run writes")
    if "metrics.csv" in entries and not _metrics_rows_upto_1(p / "metrics.csv"):
        return RunState("other", p, entries, "its metrics.csv has rows beyond epoch 1 but there is no checkpoint")
    return RunState("unstarted", p, entries)


def clear_unstarted(folder) -> list[str]:
    """Remove the files of a run killed before its first checkpoint (config.json, metrics.csv,
    gram_final.npy, tensorboard/, temporary files of atomic writes; the lock file only when nobody holds it), so that
    the run restarts cleanly. Refused (InputError) unless :func:`run_state` says "unstarted" or "new".
    Returns the names removed."""
    st = run_state(folder)
    if st.kind == "new":
        return []
    if st.kind != "unstarted":
        raise InputError(f"run folder {st.folder} is not an unstarted run ({st.kind}"
                         + (f": {st.reason}" if st.reason else "") + "); nothing removed")
    removed = []
    for name in st.entries:
        if name == LOCK_NAME:
            continue  # the lock file belongs to whoever holds the lock (possibly the caller)
        with contextlib.suppress(FileNotFoundError):
            if name == TENSORBOARD_DIR and (st.folder / name).is_dir() and not (st.folder / name).is_symlink():
                import shutil

                shutil.rmtree(st.folder / name)
            else:
                os.unlink(st.folder / name)
            removed.append(name)
    return removed
