"""The inference log: rows per input, labels attached later, concurrent writers."""

import asyncio
import sqlite3
import threading
import time

import numpy as np
import pytest

from components.core.inference_log import (
    GroupCommit,
    InferenceLog,
    NullLog,
    Record,
    is_off,
    new_request_id,
    newest_id,
    read,
)
from components.core.kinds.base import array_statistics as statistics


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 17, size=(n, 8, 8)).astype(np.float32)


def test_append_then_read_gives_one_row_per_input_with_its_statistics(tmp_path):
    log = InferenceLog(tmp_path / "log.sqlite")
    x = _images(3)
    log.append("r1", "7", x, [4, 1, 4], np.array([0.9, 0.5, 0.7]))
    log.append("r2", "7", x[:1], [4], np.array([0.8]))
    batch = read(log.path, kind="image")
    assert (batch.first, batch.last, len(batch)) == (1, 4, 4)
    table = batch.table
    assert table["request_id"].tolist() == ["r1", "r1", "r1", "r2"]
    assert table["item"].tolist() == [0, 1, 2, 0]
    assert table["prediction"].tolist() == ["4", "1", "4", "4"]
    assert table["confidence"].tolist() == pytest.approx([0.9, 0.5, 0.7, 0.8])
    assert table[["mean", "std", "min", "max", "ink"]].to_numpy() == pytest.approx(
        statistics(np.concatenate([x, x[:1]]))
    )
    assert table["label"].isna().all()
    assert newest_id(log.path) == 4
    later = read(log.path, after=batch.last)
    assert len(later) == 0 and later.last == batch.last
    with sqlite3.connect(log.path) as db:  # the input itself is kept, as float32
        (blob,) = db.execute("SELECT inputs FROM predictions WHERE id = 2").fetchone()
    assert np.array_equal(np.frombuffer(blob, np.float32).reshape(8, 8), x[1])


def test_labels_attach_to_a_logged_request_in_order(tmp_path):
    log = InferenceLog(tmp_path / "log.sqlite")
    log.append("r1", "1", _images(2), [3, 5], np.array([0.9, 0.9]))
    assert log.attach_labels("r1", [3, 8]) == (2, 0)
    assert read(log.path).table["label"].tolist() == ["3", "8"]
    with pytest.raises(LookupError, match="no logged request"):
        log.attach_labels("nope", [1])
    with pytest.raises(ValueError, match="had 2 input"):
        log.attach_labels("r1", [1])


def test_a_second_label_is_refused_unless_overwriting(tmp_path):
    log = InferenceLog(tmp_path / "log.sqlite")
    log.append("r1", "1", _images(2), [3, 5], np.array([0.9, 0.9]))
    log.attach_labels("r1", [3, 8])
    with pytest.raises(FileExistsError, match="labelled already"):
        log.attach_labels("r1", [1, 1])
    assert read(log.path).table["label"].tolist() == ["3", "8"]  # the first labels stand
    assert log.attach_labels("r1", [1, 2], overwrite=True) == (2, 2)
    assert read(log.path).table["label"].tolist() == ["1", "2"]


def test_reading_a_missing_log_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no inference log at"):
        read(tmp_path / "none.sqlite")


def test_concurrent_writers_in_threads_and_connections_lose_nothing(tmp_path):
    path = tmp_path / "log.sqlite"
    logs = [InferenceLog(path), InferenceLog(path)]  # two "workers" on one file
    x = _images(1)

    def write(worker: int) -> None:
        for i in range(100):
            logs[worker % 2].append(f"w{worker}-{i}", "1", x, [0], np.array([1.0]))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = read(path).table
    assert len(table) == 600 and table["request_id"].nunique() == 600


def _committing(log: InferenceLog) -> list[int]:
    """Count ``log``'s transactions: the sizes of the groups it commits, in order."""
    groups: list[int] = []
    commit = log.append_many

    def counted(records):
        commit(records)
        groups.append(len(records))

    log.append_many = counted
    return groups


def test_group_commit_puts_the_requests_of_one_turn_in_one_transaction(tmp_path):
    log = InferenceLog(tmp_path / "log.sqlite")
    groups = _committing(log)
    writer = GroupCommit(log)
    x = _images(1)

    async def request(i: int) -> int:
        await writer.append(Record(f"r{i}", "1", x, [0], np.array([1.0])))
        return newest_id(log.path)  # read from another connection: committed

    async def burst() -> list[int]:
        return await asyncio.gather(*(request(i) for i in range(100)))

    seen = asyncio.run(burst())
    assert groups == [100]  # one commit for the hundred waiting requests
    assert min(seen) == 100  # each answered only once its record was in the file
    asyncio.run(request(100))  # alone: committed at once, by itself
    assert groups == [100, 1] and len(read(log.path)) == 101


def test_a_failed_group_commit_fails_every_request_of_the_group_and_the_next_succeeds(tmp_path):
    log = InferenceLog(tmp_path / "log.sqlite")
    writer = GroupCommit(log)
    x = _images(1)

    async def burst(n: int) -> list:
        return await asyncio.gather(
            *(writer.append(Record(f"{n}-{i}", "1", x, [0], np.array([1.0]))) for i in range(n)),
            return_exceptions=True,
        )

    log._db.execute("PRAGMA query_only = 1")  # writes now fail, as on a read-only file
    results = asyncio.run(burst(3))
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
    log._db.execute("PRAGMA query_only = 0")
    assert asyncio.run(burst(2)) == [None, None]
    assert read(log.path).table["request_id"].tolist() == ["2-0", "2-1"]  # nothing half-done


def test_request_ids_are_unique_hex_and_grow_with_time():
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    times = [i[:16] for i in ids]  # the first half: the time, so the id index grows at its end
    assert times == sorted(times)
    time.sleep(0.001)
    assert new_request_id() > max(ids)


def test_a_text_request_logs_its_own_statistics_and_the_text_only_when_inputs_are_kept(tmp_path):
    from components.core.kinds.texts import TEXTS

    texts = ["Call 0800 now!", "see you"]
    stats = TEXTS.describe(texts, [0.5, 0.0])
    for keep in (True, False):
        path = tmp_path / f"{keep}.sqlite"
        log = InferenceLog(path, keep_inputs=keep)
        ids = np.zeros((2, 8), np.int32)
        log.append_many([Record("r1", "3", ids, ["spam", "ham"], np.array([0.9, 0.8]), stats,
                                [t.encode() for t in texts])])  # fmt: skip
        log.close()
        table = read(path, kind="text").table  # the statistics as the text kind names them
        assert table["chars"].tolist() == [14.0, 7.0]
        assert table["unknown"].tolist() == [0.5, 0.0]  # unknown-token share
        assert "mean" not in table.columns and read(path).table["s1"].tolist() == [14.0, 7.0]
        db = sqlite3.connect(path)
        kept = [row[0] for row in db.execute("SELECT inputs FROM predictions ORDER BY id")]
        db.close()
        assert kept == ([b"Call 0800 now!", b"see you"] if keep else [b"", b""])


def test_the_log_turned_off_is_a_null_log_that_records_nothing_and_finds_no_request():
    import asyncio

    log = NullLog()
    assert is_off("off") and not is_off("inference.sqlite") and not is_off(None)
    record = Record("r1", "1", np.zeros((2, 4), np.float32), [0, 1], np.ones(2))
    log.append_many([record])
    asyncio.run(log.append(record))  # the service awaits it as it awaits a group commit
    log.probe()
    with pytest.raises(LookupError, match="inference log is off"):
        log.attach_labels("r1", [0, 1])  # /feedback answers 404


def test_a_log_written_before_the_slots_had_names_is_renamed_on_open_and_reads_as_before(
    tmp_path,
):
    """Logs of earlier releases named the five statistics mean, std, min, max, ink whatever
    the kind: opening one renames them to the slots, its rows kept."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE predictions (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, item"
        " INTEGER NOT NULL, ts REAL NOT NULL, model_version TEXT NOT NULL, mean REAL NOT NULL,"
        " std REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, ink REAL NOT NULL, inputs"
        " BLOB NOT NULL, prediction TEXT NOT NULL, confidence REAL NOT NULL, label TEXT,"
        " UNIQUE (request_id, item))"
    )
    db.execute("INSERT INTO predictions VALUES (1, 'r0', 0, 1.0, '1', 14, 0.1, 0.2, 0.5, 3,"
               " x'', 'spam', 0.9, NULL)")  # fmt: skip
    db.commit()
    db.close()
    log = InferenceLog(path)
    log.append("r1", "2", _images(1), [4], np.array([0.8]))
    log.close()
    table = read(path, kind="text").table
    assert table["chars"].tolist()[0] == 14 and table["words"].tolist()[0] == 3
    assert table["request_id"].tolist() == ["r0", "r1"] and newest_id(path) == 2
