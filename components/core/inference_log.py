"""The inference log: one row per served prediction, in SQLite (WAL), written before the answer.

Each row holds the request id, its position in the request's batch, the time, the
model version, five per-sample statistics of the input (what each one is, the data
kind declares: ``DataKind.logged``, its schema, and ``DataKind.describe``; drift is
checked on them), the input itself (float32 bytes; empty with ``MLOOP_LOG_INPUTS=false``, and then
``mloop harvest`` has nothing to learn from), the predicted class, its confidence, and
later the true label (``attach_labels``, from the feedback endpoint). A request is
committed before its response is sent, so every acknowledged request survives a
``kill -9`` of the server: WAL commits reach the operating system at commit time.

The service appends through ``GroupCommit``: each server worker commits the
records of all the requests waiting in one turn of its event loop in one
transaction, so under load a commit serves many requests. Several workers append
to one file; a lock file beside it queues their transactions (``flock`` wakes the
next writer at once, where SQLite's own busy handler would sleep and retry in steps
of up to 100 ms). Request ids begin with the
time (``new_request_id``), so each record lands at the end of the id index, as of
the table (rows are never deleted, so ids only grow): a commit writes a few pages,
not one page per record, and costs about half what random ids did.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from components.core.kinds import kind as data_kind
from components.core.kinds.base import array_statistics

# The log's five statistics slots, as stored. What each holds is the data kind's schema
# (``DataKind.logged``, in order): ``read`` names them so for the kind asked. Logs written
# before the slots had names of their own (mean, std, min, max, ink) are renamed on open.
SLOTS = ("s1", "s2", "s3", "s4", "s5")
_OLD_SLOTS = ("mean", "std", "min", "max", "ink")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    ts REAL NOT NULL,
    model_version TEXT NOT NULL,
    s1 REAL NOT NULL, s2 REAL NOT NULL, s3 REAL NOT NULL, s4 REAL NOT NULL, s5 REAL NOT NULL,
    inputs BLOB NOT NULL,
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    label TEXT,
    label_source TEXT,
    UNIQUE (request_id, item)
);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, ts REAL NOT NULL);
"""


def new_request_id() -> str:
    """32 hex digits: the time in nanoseconds, then 64 random bits (unique, not guessable)."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


@dataclass(frozen=True)
class Batch:
    """Rows ``first..last`` of the log (``last < first``: none yet) as a table."""

    first: int
    last: int
    table: object  # pandas DataFrame: id, request_id, ts, model_version, statistics, ...

    def __len__(self) -> int:
        return len(self.table)


class Record(NamedTuple):
    """One request's predictions, as the log stores them: a row per input."""

    request_id: str
    model_version: str
    x: np.ndarray  # the inputs, one row (or image) per prediction
    predictions: list  # the predicted classes
    confidence: np.ndarray  # each prediction's probability
    # Texts: their statistics (N x 5, ``TEXTS.describe``) and each text as UTF-8, kept as
    # the input; arrays' statistics are computed from ``x`` at commit (``array_statistics``).
    statistics: np.ndarray | None = None
    texts: list[bytes] | None = None


class NullLog:
    """The inference log when it is off (``MLOOP_INFERENCE_LOG=off``): predictions are not
    recorded, nothing waits on a commit, and a label has no request to attach to."""

    path = None

    def append_many(self, records: list[Record]) -> None:
        pass

    async def append(self, record: Record) -> None:  # the group writer's call, answered at once
        pass

    def attach_labels(self, request_id: str, labels: list, overwrite: bool = False,
                      source: str = "") -> tuple[int, int]:  # fmt: skip
        raise LookupError("the inference log is off (MLOOP_INFERENCE_LOG=off)")

    def probe(self) -> None:
        pass

    def close(self) -> None:
        pass


OFF = "off"  # MLOOP_INFERENCE_LOG's value that turns the log off


def is_off(configured: str | Path | None) -> bool:
    return str(configured) == OFF


class InferenceLog:
    """Appends predictions to ``path``; safe to share between the threads of one process,
    and between processes."""

    def __init__(self, path: Path | str, timeout_s: float = 30.0, keep_inputs: bool = True) -> None:
        self.path = Path(path)
        self.keep_inputs = keep_inputs  # off (MLOOP_LOG_INPUTS=false): statistics only
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(self.path, timeout_s)
        self._lock = threading.Lock()
        self._writers = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115

    @contextlib.contextmanager
    def _writing(self):
        """One transaction, with this file's writers (threads and processes) queued."""
        with self._lock:
            fcntl.flock(self._writers, fcntl.LOCK_EX)  # releases the GIL while it waits
            try:
                with self._db:
                    yield self._db
            finally:
                fcntl.flock(self._writers, fcntl.LOCK_UN)

    def append(
        self,
        request_id: str,
        model_version: str,
        x: np.ndarray,
        predictions: list,
        confidence: np.ndarray,
    ) -> None:
        """Record one request's predictions; returns once they are committed."""
        self.append_many([Record(request_id, model_version, x, predictions, confidence)])

    def append_many(self, records: list[Record]) -> None:
        """Record several requests' predictions in one transaction; returns once committed."""
        now = time.time()
        arrays = [np.asarray(r.x, dtype=np.float32).reshape(len(r.x), -1) for r in records
                  if r.statistics is None]  # fmt: skip
        flat = np.concatenate(arrays) if arrays else None
        computed = array_statistics(flat).tolist() if arrays else []  # one call for the commit
        rows, k = [], 0
        for request_id, model_version, x, predictions, confidence, given, texts in records:
            text = given is not None  # texts: their own statistics, the text as the input
            if text:
                stats, inputs = given.tolist(), texts
            else:
                stats, inputs, k = computed[k : k + len(x)], flat[k : k + len(x)], k + len(x)
            for i in range(len(x)):
                kept = (inputs[i] if text else inputs[i].tobytes()) if self.keep_inputs else b""
                rows.append((request_id, i, now, model_version, *stats[i], kept,
                             str(predictions[i]), float(confidence[i])))  # fmt: skip
        with self._writing() as db:
            db.executemany(
                "INSERT INTO predictions (request_id, item, ts, model_version, s1, s2, s3, s4, s5,"
                " inputs, prediction, confidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def attach_labels(
        self, request_id: str, labels: list, overwrite: bool = False, source: str = ""
    ) -> tuple[int, int]:
        """Set the true labels of a logged request, in batch order.

        Returns ``(rows updated, labels replaced)``. Raises ``LookupError`` for an
        unknown request, ``ValueError`` when the number of labels differs from the
        number of inputs it had, and ``FileExistsError`` when it has labels already
        and ``overwrite`` is off.
        """
        with self._writing() as db:
            (count, labelled) = db.execute(
                "SELECT COUNT(*), COUNT(label) FROM predictions WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if count == 0:
                raise LookupError(f"no logged request with id {request_id!r}")
            if len(labels) != count:
                raise ValueError(
                    f"request {request_id} had {count} input(s); got {len(labels)} label(s)"
                )
            if labelled and not overwrite:
                raise FileExistsError(
                    f"request {request_id} is labelled already ({labelled} of {count});"
                    " send overwrite: true to replace its labels"
                )
            db.executemany(
                "UPDATE predictions SET label = ?, label_source = ? WHERE request_id = ?"
                " AND item = ?",
                [(str(label), source or None, request_id, i) for i, label in enumerate(labels)],
            )
        return count, labelled

    def probe(self) -> None:
        """Commit one small write: raises ``sqlite3.Error`` while the log cannot be written
        (a full disk, a read-only file), as an append would."""
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO probe (id, ts) VALUES (1, ?)", (time.time(),))

    def close(self) -> None:
        self._db.close()
        self._writers.close()


class GroupCommit:
    """Group commit on the server's event loop: one transaction for all waiting requests.

    ``await append(record)`` returns once the record is committed, or raises what
    failed its commit (``sqlite3.Error``: the disk is full, the file read-only). The
    first record of an event-loop turn schedules a commit for the end of the turn
    (``call_soon``); every request that reaches its log step in that turn adds its
    record and waits. A request alone commits at once, with no added wait; under
    load one commit serves all the requests of a turn, so commits stop serialising
    requests. The commit runs on the loop itself: a group costs less (≈50 µs, and
    ≈12 µs a record) than handing it to a writer thread, whose every hand-back
    waited on the GIL (that design sustained 1,750 requests/s, this one 2,750:
    benchmarks/serving.py).
    """

    def __init__(self, log: InferenceLog | NullLog) -> None:
        self.log = log
        self._waiting: list[tuple[asyncio.Future, Record]] = []

    async def append(self, record: Record) -> None:
        committed = asyncio.get_running_loop().create_future()
        if not self._waiting:
            committed.get_loop().call_soon(self._commit)
        self._waiting.append((committed, record))
        await committed

    def _commit(self) -> None:
        group, self._waiting = self._waiting, []
        error = None
        try:
            self.log.append_many([record for _, record in group])
        except Exception as err:  # noqa: BLE001 (each waiting request gets it)
            error = err
        _settle([committed for committed, _ in group], error)


def _settle(futures: list[asyncio.Future], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # its request was cancelled (the client went away)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def connect(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process, not power loss
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
    for old, slot in zip(_OLD_SLOTS, SLOTS, strict=True):
        if old in columns:  # a log written before the slots were named; another process
            with contextlib.suppress(sqlite3.OperationalError):  # may rename it first
                db.execute(f"ALTER TABLE predictions RENAME COLUMN {old} TO {slot}")
    if "label_source" not in columns:  # a log written before labels named their labeller
        with contextlib.suppress(sqlite3.OperationalError):  # another process added it
            db.execute("ALTER TABLE predictions ADD COLUMN label_source TEXT")
    return db


def read(path: Path | str, after: int = 0, kind: str | None = None) -> Batch:
    """Rows with id greater than ``after`` (all columns but the raw inputs), oldest first;
    the statistics named as data ``kind`` names them (``DataKind.logged``), else s1..s5."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no inference log at {path}: serve the model and send traffic")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        query = (
            "SELECT id, request_id, item, ts, model_version, s1, s2, s3, s4, s5,"
            " prediction, confidence, label FROM predictions WHERE id > ? ORDER BY id"
        )
        table = pd.read_sql_query(query, db, params=(after,))
    finally:
        db.close()
    if kind is not None:
        table = named(table, kind)
    last = int(table["id"].iloc[-1]) if len(table) else after
    return Batch(first=after + 1, last=last, table=table)


def named(table, kind: str):
    """The log's rows with their statistics slots named as data ``kind`` names them."""
    return table.rename(columns=dict(zip(SLOTS, data_kind(kind).logged, strict=True)))


def labelled(path: Path | str, exclude: set[str] = frozenset(), inputs: bool = True):
    """Every labelled row, oldest first, less the rows of the requests in ``exclude``:
    ``size`` is the bytes of input it kept (0: not kept), ``inputs`` the input itself
    (with ``inputs``; read only for the rows left, a block at a time)."""
    import pandas as pd

    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30)
    try:
        table = pd.read_sql_query(
            "SELECT id, request_id, item, model_version, label, label_source,"
            " length(inputs) AS size FROM predictions WHERE label IS NOT NULL ORDER BY id",
            db,
        )
        if exclude:
            table = table[~table["request_id"].isin(exclude)].reset_index(drop=True)
        if inputs:
            blobs = _inputs(db, table["id"].tolist())
            table["inputs"] = [blobs[i] for i in table["id"].tolist()]
    finally:
        db.close()
    return table


def inputs(path: Path | str, ids: list[int]) -> dict[int, bytes]:
    """The kept inputs of the rows ``ids`` (b"": none kept)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30)
    try:
        return _inputs(db, ids)
    finally:
        db.close()


def _inputs(db: sqlite3.Connection, ids: list[int]) -> dict[int, bytes]:
    blobs: dict[int, bytes] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound-variable limit, with room
        chunk = [int(i) for i in ids[start : start + 500]]
        marks = ",".join("?" * len(chunk))
        blobs.update(db.execute(
            f"SELECT id, inputs FROM predictions WHERE id IN ({marks})", chunk
        ).fetchall())  # fmt: skip
    return blobs


def newest_id(path: Path | str) -> int:
    """The id of the newest row (0 for an empty log)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM predictions").fetchone()[0])
    finally:
        db.close()
