"""The runs database: every step of every training run, kept in SQLite.

A run is one training run, identified by its checkpoint's run id and given a short name to
type. Its series (the loss, the learning rate, per-matrix norms and update ratios, ...) are
kept at every step, never sampled; its snapshots keep every weight, grad and Adam moment
at chosen steps. The schema (README, "The runs database"):

    runs(id, name, status, pid, host, started, updated, ended, steps, checkpoint,
         data, data_sha256, seed, granularity, config)
    series(id, run, name)                       one row per recorded series of a run
    points(series, step, value)                 value NULL where it was NaN (SQLite has no NaN)
    snapshots(run, step, matrix, kind, rows, cols, value)
                                                kind: data, grad, m or v; value: float64 row-major,
                                                little-endian (``array('d')``)

Several runs may write one database at once: each write is one short transaction, and a
writer waits (up to a minute) for another's lock instead of failing. Points and snapshots
are written in batches, a transaction a second. Times are Unix seconds.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microgpt.errors import MicrogptError

DEFAULT_RUNS = "runs.sqlite"
STATUSES = ("running", "finished", "interrupted", "diverged", "killed")
SNAPSHOT_KINDS = ("data", "grad", "m", "v")
_TABLES = ("runs", "series", "points", "snapshots")
SCHEMA_VERSION = 1
LOCK_WAIT_SECONDS = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    pid INTEGER,
    host TEXT,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    ended REAL,
    steps INTEGER NOT NULL,
    checkpoint TEXT,
    data TEXT,
    data_sha256 TEXT,
    seed TEXT,  -- its digits: a Python seed may exceed SQLite's 64-bit integers
    granularity TEXT,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    UNIQUE (run, name)
);
CREATE TABLE IF NOT EXISTS points (
    series INTEGER NOT NULL REFERENCES series(id),
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (series, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    run TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    matrix TEXT NOT NULL,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    cols INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (run, step, matrix, kind)
);
"""


class RunsError(MicrogptError):
    """The runs database cannot be read or written; the message says why and what to do."""


def connect(path: str | Path, *, create: bool) -> sqlite3.Connection:
    """An open database at ``path``; with ``create`` the file and its tables are made if missing."""
    path = Path(path)
    if not create and not path.exists():
        raise RunsError(f"no runs database at {path}: train with recording on (the default) or pass --runs FILE")
    try:
        # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE), so a
        # writer takes the lock before it reads and two writers never deadlock.
        db = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
        if create:
            # Write-ahead logging: a commit appends to runs.sqlite-wal without waiting for the
            # disk (synchronous NORMAL), so recording costs a step little, and readers never
            # block the writers. A crash can lose the last second of points, never corrupt.
            _write_ahead_logging(db)
            db.execute("PRAGMA synchronous = NORMAL")
            # A writer appends and never reads back: a small page cache (256 KiB, not 2 MiB)
            # keeps a training run's peak memory at the reference program's.
            db.execute("PRAGMA cache_size = -256")
        with _transaction(db, write=create):
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if create and not tables:  # a new file (executescript would commit: one statement at a time)
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                tables, version = set(_TABLES), SCHEMA_VERSION
    except sqlite3.OperationalError as e:  # cannot open or lock it: a missing folder, no permission
        raise RunsError(
            f"cannot use the runs database {path} ({e}): pass another --runs FILE, or --no-record"
        ) from None
    except sqlite3.DatabaseError as e:  # not SQLite at all
        raise RunsError(f"{path} is not a runs database ({e}): pass another --runs FILE") from None
    if version != SCHEMA_VERSION or not set(_TABLES) <= tables:
        db.close()
        raise RunsError(f"{path} is not a runs database this version reads: pass another --runs FILE")
    return db


def _write_ahead_logging(db: sqlite3.Connection) -> None:
    """Switch to write-ahead logging. While another process switches the same new file, SQLite
    answers "database is locked" at once, without waiting as it does for a transaction: so
    try again, up to LOCK_WAIT_SECONDS (two or more `mgx train` started together)."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


@contextmanager
def _transaction(db: sqlite3.Connection, write: bool = True) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _stored(x: float) -> float | None:
    """SQLite turns NaN into NULL anyway; saying so here keeps the convention in one place."""
    return None if math.isnan(x) else x


def _loaded(x: float | None) -> float:
    return math.nan if x is None else x


def _seed_stored(seed: int | None) -> str | None:
    """SQLite's integers have 64 bits and a Python seed may have more: it is kept as its digits."""
    return None if seed is None else str(seed)


# -- writing ------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """What a run is: everything but its series and snapshots."""

    id: str
    name: str
    status: str
    steps: int  # planned
    config: dict[str, Any]
    started: float
    updated: float
    ended: float | None = None
    pid: int | None = None
    host: str | None = None
    checkpoint: str | None = None
    data: str | None = None
    data_sha256: str | None = None
    seed: int | None = None
    granularity: str | None = None
    # Filled in by the reader from the series: steps recorded, final and best loss.
    done: int = 0
    final_loss: float | None = None
    best_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        from microgpt.numbers import to_json_number

        out = {k: getattr(self, k) for k in _RUN_FIELDS}
        out.update(config=self.config, done=self.done)
        for key in ("final_loss", "best_loss"):
            value = getattr(self, key)
            out[key] = None if value is None else to_json_number(value)
        return out


_RUN_FIELDS = (
    "id",
    "name",
    "status",
    "steps",
    "started",
    "updated",
    "ended",
    "pid",
    "host",
    "checkpoint",
    "data",
    "data_sha256",
    "seed",
    "granularity",
)


@dataclass
class Recorder:
    """Records one run: series points are buffered and written in batches (one transaction
    every ``flush_every`` seconds, and at the end), so recording costs a step little."""

    db: sqlite3.Connection
    run_id: str
    flush_every: float = 1.0
    _series_ids: dict[str, int] = field(default_factory=dict)
    _pending: list[tuple[str, int, float]] = field(default_factory=list)
    _pending_snapshots: list[tuple] = field(default_factory=list)
    _last_flush: float = field(default_factory=time.monotonic)

    @classmethod
    def start(
        cls,
        path: str | Path,
        *,
        run_id: str,
        steps: int,
        config: dict[str, Any],
        name: str | None = None,
        checkpoint: str | None = None,
        data: str | None = None,
        data_sha256: str | None = None,
        seed: int | None = None,
        granularity: str | None = None,
        resume_from: int = 0,
    ) -> Recorder:
        """Open the run ``run_id`` for recording: a new run is added with a free name; a
        resumed run (one already in the database) is marked running again, and its points
        after ``resume_from`` steps, which the checkpoint did not keep, are dropped."""
        db = connect(path, create=True)
        now = time.time()
        with _transaction(db):
            known = db.execute("SELECT name FROM runs WHERE id = ?", (run_id,)).fetchone()
            if known is None:
                name = _free_name(db, name or "run")
                db.execute(
                    "INSERT INTO runs (id, name, status, pid, host, started, updated, steps, checkpoint, data,"
                    " data_sha256, seed, granularity, config)"
                    " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        name,
                        os.getpid(),
                        socket.gethostname(),
                        now,
                        now,
                        steps,
                        checkpoint,
                        data,
                        data_sha256,
                        _seed_stored(seed),
                        granularity,
                        json.dumps(config, sort_keys=True),
                    ),
                )
            else:
                db.execute(
                    "UPDATE runs SET status = 'running', pid = ?, host = ?, updated = ?, ended = NULL, steps = ?,"
                    " checkpoint = ? WHERE id = ?",
                    (os.getpid(), socket.gethostname(), now, steps, checkpoint, run_id),
                )
                db.execute(
                    "DELETE FROM points WHERE step > ? AND series IN (SELECT id FROM series WHERE run = ?)",
                    (resume_from, run_id),
                )
                db.execute("DELETE FROM snapshots WHERE run = ? AND step > ?", (run_id, resume_from))
        return cls(db, run_id)

    @property
    def name(self) -> str:
        return self.db.execute("SELECT name FROM runs WHERE id = ?", (self.run_id,)).fetchone()[0]

    def add(self, step: int, values: dict[str, float]) -> None:
        """The series' values at ``step`` (steps done, counted from 1)."""
        self._pending.extend((name, step, value) for name, value in values.items())
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def snapshot(self, step: int, matrices: dict[str, dict[str, Sequence[Sequence[float]]]]) -> None:
        """Every matrix's data, grad and Adam moments at ``step``: {matrix: {kind: rows}}."""
        rows = []
        for matrix, kinds in matrices.items():
            for kind, values in kinds.items():
                if kind not in SNAPSHOT_KINDS:
                    raise ValueError(f"snapshot kind {kind!r} is not one of {SNAPSHOT_KINDS}")
                flat = array("d", (x for row in values for x in row))
                if sys.byteorder != "little":
                    flat.byteswap()
                n_cols = len(values[0]) if values else 0
                rows.append((self.run_id, step, matrix, kind, len(values), n_cols, flat.tobytes()))
        self._pending_snapshots.extend(rows)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        snapshots, self._pending_snapshots = self._pending_snapshots, []
        self._last_flush = time.monotonic()
        with _transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?)", snapshots)
            for name in dict.fromkeys(name for name, _, _ in pending if name not in self._series_ids):
                self._series_ids[name] = self._series_id(name)
            rows = sorted((self._series_ids[name], step, _stored(value)) for name, step, value in pending)
            # in key order, each series' points append to the end of its part of the index
            self.db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)", rows)
            self.db.execute("UPDATE runs SET updated = ? WHERE id = ?", (time.time(), self.run_id))

    def _series_id(self, name: str) -> int:
        self.db.execute("INSERT OR IGNORE INTO series (run, name) VALUES (?, ?)", (self.run_id, name))
        return self.db.execute("SELECT id FROM series WHERE run = ? AND name = ?", (self.run_id, name)).fetchone()[0]

    def finish(self, status: str) -> None:
        """Write what is buffered and mark the run ``status`` (finished, interrupted, diverged)."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        self.flush()
        now = time.time()
        with _transaction(self.db):
            self.db.execute(
                "UPDATE runs SET status = ?, updated = ?, ended = ?, pid = NULL WHERE id = ?",
                (status, now, now, self.run_id),
            )
        self.db.close()


class StepRecorder:
    """What ``mgx train`` records of each step (``train(on_detail=...)``): the series of
    viz.dynamics, and a snapshot every ``snapshot_every`` steps and at the end."""

    def __init__(self, db: Recorder, config, state, snapshot_every: int = 50) -> None:
        from microgpt.model import weight_shapes
        from viz.dynamics import flat_slices

        self.db, self.state = db, state  # state: the TrainState, whose moments a snapshot keeps
        self.shapes = weight_shapes(config)
        self.slices = flat_slices(self.shapes)
        self.snapshot_every = snapshot_every
        self.last = None  # the last step: (step, weights, grads)
        self.last_snapshotted = True

    def on_detail(self, detail) -> None:
        from viz.dynamics import step_series

        self.db.add(detail.step, step_series(detail, self.slices))
        # Only numbers are kept: the detail holds the step's graph, which must be freed now.
        self.last, self.last_snapshotted = (detail.step, detail.after, detail.grads), False
        if detail.step % self.snapshot_every == 0:
            self._snapshot()

    def _snapshot(self) -> None:
        from viz.dynamics import snapshot

        step, data, grads = self.last
        self.db.snapshot(step, snapshot(self.shapes, data=data, grad=grads, m=self.state.m, v=self.state.v))
        self.last_snapshotted = True

    def finish(self, status: str) -> None:
        """Snapshot the last step if it has none yet, write what is buffered, set the status."""
        if self.last is not None and not self.last_snapshotted:
            self._snapshot()
        self.db.finish(status)


def _free_name(db: sqlite3.Connection, wanted: str) -> str:
    taken = {row[0] for row in db.execute("SELECT name FROM runs")}
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"


# -- reading ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _status(row: sqlite3.Row) -> str:
    """A run marked running whose process is gone on this machine was killed outright."""
    if row["status"] == "running" and row["host"] == socket.gethostname() and row["pid"] and not _alive(row["pid"]):
        return "killed"
    return row["status"]


def list_runs(path: str | Path) -> list[RunInfo]:
    """Every run in the database, oldest first, with its steps done and its final and best loss."""
    with closing(connect(path, create=False)) as db:
        db.row_factory = sqlite3.Row
        losses = {
            row["run"]: row
            for row in db.execute(
                "SELECT s.run AS run, COUNT(p.step) AS done, MIN(p.value) AS best,"
                " (SELECT value FROM points WHERE series = s.id ORDER BY step DESC LIMIT 1) AS final"
                " FROM series s JOIN points p ON p.series = s.id WHERE s.name = 'loss' GROUP BY s.id"
            )
        }
        out = []
        for row in db.execute("SELECT * FROM runs ORDER BY started, id"):
            info = RunInfo(**{k: row[k] for k in _RUN_FIELDS}, config=json.loads(row["config"]))
            info.seed = None if info.seed is None else int(info.seed)
            info.status = _status(row)
            loss = losses.get(row["id"])
            if loss is not None:
                info.done, info.best_loss = loss["done"], loss["best"]
                info.final_loss = _loaded(loss["final"])
            out.append(info)
        return out


def find_run(runs: Iterable[RunInfo], key: str) -> RunInfo:
    """The run named ``key``, or whose id starts with it (at least 4 characters)."""
    runs = list(runs)
    for run in runs:
        if run.name == key:
            return run
    by_id = [run for run in runs if len(key) >= 4 and run.id.startswith(key)]
    if len(by_id) == 1:
        return by_id[0]
    names = ", ".join(run.name for run in runs) or "none yet"
    raise RunsError(f"no run named {key!r} (runs: {names}): pass a name from mgx runs, or an id prefix")


def series_names(path: str | Path, run_id: str) -> list[str]:
    with closing(connect(path, create=False)) as db:
        return [row[0] for row in db.execute("SELECT name FROM series WHERE run = ? ORDER BY id", (run_id,))]


def read_series(path: str | Path, run_id: str, name: str) -> tuple[list[int], list[float]]:
    """The steps and values of one series of a run, in step order (NaN where NULL)."""
    with closing(connect(path, create=False)) as db:
        rows = db.execute(
            "SELECT p.step, p.value FROM points p JOIN series s ON p.series = s.id"
            " WHERE s.run = ? AND s.name = ? ORDER BY p.step",
            (run_id, name),
        ).fetchall()
    return [step for step, _ in rows], [_loaded(value) for _, value in rows]


def snapshot_steps(path: str | Path, run_id: str) -> list[int]:
    with closing(connect(path, create=False)) as db:
        rows = db.execute("SELECT DISTINCT step FROM snapshots WHERE run = ? ORDER BY step", (run_id,))
        return [row[0] for row in rows]


def read_snapshot(path: str | Path, run_id: str, step: int) -> dict[str, dict[str, list[list[float]]]]:
    """{matrix: {kind: rows}} as :meth:`Recorder.snapshot` wrote it at ``step``."""
    with closing(connect(path, create=False)) as db:
        rows = db.execute(
            "SELECT matrix, kind, rows, cols, value FROM snapshots WHERE run = ? AND step = ? ORDER BY rowid",
            (run_id, step),
        ).fetchall()
    if not rows:
        steps = ", ".join(map(str, snapshot_steps(path, run_id))) or "none"
        raise RunsError(f"run has no snapshot at step {step} (snapshots at: {steps}): pass one of those steps")
    out: dict[str, dict[str, list[list[float]]]] = {}
    for matrix, kind, n_rows, n_cols, blob in rows:
        flat = array("d")
        flat.frombytes(blob)
        if sys.byteorder != "little":
            flat.byteswap()
        out.setdefault(matrix, {})[kind] = [list(flat[r * n_cols : (r + 1) * n_cols]) for r in range(n_rows)]
    return out
