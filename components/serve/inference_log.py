"""The inference log: one row per served prediction, in SQLite (WAL), written before the answer.

Each row holds the request id, its position in the request's batch, the time, the
model version, per-sample statistics of the input (the columns drift is checked
on), the input itself (float32 bytes), the predicted class, its confidence, and
later the true label (``attach_labels``, from the feedback endpoint). A request is
committed before its response is sent, so every acknowledged request survives a
``kill -9`` of the server: WAL commits reach the operating system at commit time.
Several server workers append to one file; SQLite serialises their writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATISTICS = ("mean", "std", "min", "max", "ink")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    ts REAL NOT NULL,
    model_version TEXT NOT NULL,
    mean REAL NOT NULL, std REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    ink REAL NOT NULL,
    inputs BLOB NOT NULL,
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    label TEXT,
    UNIQUE (request_id, item)
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, ts REAL NOT NULL);
"""


def statistics(x: np.ndarray) -> np.ndarray:
    """Per-sample mean, std, min, max and ink (share of non-zero values): N x 5."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.stack(
        [flat.mean(1), flat.std(1), flat.min(1), flat.max(1), (flat > 0).mean(1)], axis=1
    )


@dataclass(frozen=True)
class Batch:
    """Rows ``first..last`` of the log (``last < first``: none yet) as a table."""

    first: int
    last: int
    table: object  # pandas DataFrame: id, request_id, ts, model_version, statistics, ...

    def __len__(self) -> int:
        return len(self.table)


class InferenceLog:
    """Appends predictions to ``path``; safe to share between the threads of one process."""

    def __init__(self, path: Path | str, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(self.path, timeout_s)
        self._lock = threading.Lock()

    def append(
        self,
        request_id: str,
        model_version: str,
        x: np.ndarray,
        predictions: list,
        confidence: np.ndarray,
    ) -> None:
        """Record one request's predictions; returns once they are committed."""
        now = time.time()
        stats = statistics(x)
        rows = [
            (request_id, i, now, model_version, *map(float, stats[i]),
             np.ascontiguousarray(x[i], dtype=np.float32).tobytes(), str(predictions[i]),
             float(confidence[i]))
            for i in range(len(x))
        ]  # fmt: skip
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO predictions (request_id, item, ts, model_version, mean, std, min,"
                " max, ink, inputs, prediction, confidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def attach_labels(
        self, request_id: str, labels: list, overwrite: bool = False
    ) -> tuple[int, int]:
        """Set the true labels of a logged request, in batch order.

        Returns ``(rows updated, labels replaced)``. Raises ``LookupError`` for an
        unknown request, ``ValueError`` when the number of labels differs from the
        number of inputs it had, and ``FileExistsError`` when it has labels already
        and ``overwrite`` is off.
        """
        with self._lock, self._db:
            (count, labelled) = self._db.execute(
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
            self._db.executemany(
                "UPDATE predictions SET label = ? WHERE request_id = ? AND item = ?",
                [(str(label), request_id, i) for i, label in enumerate(labels)],
            )
        return count, labelled

    def probe(self) -> None:
        """Commit one small write: raises ``sqlite3.Error`` while the log cannot be written
        (a full disk, a read-only file), as an append would."""
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO probe (id, ts) VALUES (1, ?)", (time.time(),))

    def close(self) -> None:
        self._db.close()


def connect(path: Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process, not power loss
    db.executescript(_SCHEMA)
    return db


def read(path: Path | str, after: int = 0) -> Batch:
    """Rows with id greater than ``after`` (all columns but the raw inputs), oldest first."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no inference log at {path}: serve the model and send traffic")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        query = (
            "SELECT id, request_id, item, ts, model_version, mean, std, min, max, ink,"
            " prediction, confidence, label FROM predictions WHERE id > ? ORDER BY id"
        )
        table = pd.read_sql_query(query, db, params=(after,))
    finally:
        db.close()
    last = int(table["id"].iloc[-1]) if len(table) else after
    return Batch(first=after + 1, last=last, table=table)


def newest_id(path: Path | str) -> int:
    """The id of the newest row (0 for an empty log)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM predictions").fetchone()[0])
    finally:
        db.close()
