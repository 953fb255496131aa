"""The exactly-once tail: every complete line once, across restarts, rotation, copy-truncate and vanishing files."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from refcal.watch.tail import KEPT_BYTES, Batch, Tail, save_cursors

SMALL_CHUNK = 64
"""Bytes read at a time in these tests, so a few lines make many batches."""


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS seen (name TEXT, lineno INTEGER, text TEXT)")
    return db


def _tail(db: sqlite3.Connection, log: Path, **options: object) -> Tail:
    return Tail(db, [log], chunk_bytes=options.pop("chunk_bytes", SMALL_CHUNK), **options)  # type: ignore[arg-type]


def _consume(db: sqlite3.Connection, tail: Tail, crash_after: int | None = None) -> list[Batch]:
    """One pass: each batch's lines and cursors committed together; with crash_after, the batch after that
    many is rolled back instead (a kill between reading and committing) and the pass ends there."""
    batches = []
    for number, batch in enumerate(tail.poll()):
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO seen VALUES (?, ?, ?)",
                       [(Path(batch.name).name, batch.first_lineno + index, line.decode())
                        for index, line in enumerate(batch.lines)])
        save_cursors(db, batch)
        if crash_after is not None and number >= crash_after:
            db.execute("ROLLBACK")
            break
        db.execute("COMMIT")
        batches.append(batch)
    return batches


def _seen(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT text FROM seen ORDER BY rowid")]


def _write(path: Path, lines: list[str], mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as file:
        file.write("".join(line + "\n" for line in lines))


def _lines(prefix: str, start: int, stop: int) -> list[str]:
    return [f'{{"{prefix}": {number}}}' for number in range(start, stop)]


def test_restart_after_a_kill_resumes_without_loss_or_repeat(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 40))
    _consume(db, _tail(db, log), crash_after=3)  # three batches committed, the fourth killed before commit
    assert 0 < len(_seen(db)) < 40
    _write(log, _lines("a", 40, 60))
    _consume(db, _tail(db, log))  # a new process: only the checkpoint in the database survives
    assert _seen(db) == _lines("a", 0, 60)


def test_line_numbers_follow_the_file(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("a", 10, 12))
    _consume(db, _tail(db, log))
    numbers = [row[0] for row in db.execute("SELECT lineno FROM seen ORDER BY rowid")]
    assert numbers == list(range(1, 13))


def test_truncated_last_line_is_retried_on_the_next_pass(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 3))
    with log.open("a") as file:
        file.write('{"a": 3, "half": "writ')
    tail = _tail(db, log)
    _consume(db, tail)
    assert _seen(db) == _lines("a", 0, 3)
    with log.open("a") as file:
        file.write('ten"}\n')
    _consume(db, tail)
    assert _seen(db)[-1] == '{"a": 3, "half": "written"}'
    assert db.execute("SELECT lineno FROM seen ORDER BY rowid DESC LIMIT 1").fetchone()[0] == 4


def test_rotation_by_rename_finishes_the_old_file_first(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 10, 15))  # written before the rotation, not read yet
    log.rename(tmp_path / "app.log.1")
    _write(log, _lines("new", 0, 5), mode="w")
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 15) + _lines("new", 0, 5)
    names = [row[0] for row in db.execute("SELECT DISTINCT name FROM seen ORDER BY rowid")]
    assert names == ["app.log", "app.log.1", "app.log"] or names == ["app.log", "app.log.1"]


def test_rotation_while_stopped_is_found_by_inode_among_siblings(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 10, 14))
    log.rename(tmp_path / "app.log.1")  # rotated while no sweep ran: no handle is held
    (tmp_path / "app.log.2").write_text('{"older": 1}\n')  # a sibling that is not ours
    _write(log, _lines("new", 0, 3), mode="w")
    _consume(db, _tail(db, log))
    assert _seen(db) == _lines("old", 0, 14) + _lines("new", 0, 3)


def test_rotated_file_still_written_is_followed_until_it_settles(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 4))
    tail = _tail(db, log, settle=2)
    _consume(db, tail)
    log.rename(tmp_path / "app.log.1")
    _write(log, _lines("new", 0, 2), mode="w")
    _consume(db, tail)
    _write(tmp_path / "app.log.1", _lines("old", 4, 6))  # the writer had not reopened yet
    with (tmp_path / "app.log.1").open("a") as file:
        file.write('{"old": 6}')  # and died mid-line: no newline will ever come
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 4) + _lines("new", 0, 2) + _lines("old", 4, 6)
    _consume(db, tail)
    _consume(db, tail)  # settled: the unterminated last line is handed out, the cursor forgotten
    assert _seen(db)[-1] == '{"old": 6}'
    assert [cursor.state for cursor in tail.cursors(log)] == ["current"]
    _consume(db, tail)
    assert _seen(db).count('{"old": 6}') == 1


def test_copy_truncate_reads_the_rest_from_the_copy(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 10, 13))
    shutil.copy(log, tmp_path / "app.log.1")  # logrotate copytruncate: copy, then truncate in place
    with log.open("r+") as file:
        file.truncate(0)
    _write(log, _lines("new", 0, 4))
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 13) + _lines("new", 0, 4)


def test_copy_truncate_after_a_restart(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 30))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 30, 32))
    shutil.copy(log, tmp_path / "app.log.1")
    with log.open("r+") as file:
        file.truncate(0)
    _write(log, _lines("new", 0, 40))  # regrown past the old offset: only the head tells the files apart
    _consume(db, _tail(db, log))
    assert _seen(db) == _lines("old", 0, 32) + _lines("new", 0, 40)


def test_rewritten_in_place_without_a_copy_starts_over_and_says_so(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 5))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("other", 0, 9), mode="w")  # same inode, different head, longer than before
    batches = _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 5) + _lines("other", 0, 9)
    assert any("truncated" in note for batch in batches for note in batch.notes)


def test_file_deleted_mid_read_is_read_to_its_end(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 30))
    tail = _tail(db, log)
    batches = tail.poll()
    first = next(batches)
    db.execute("BEGIN IMMEDIATE")
    save_cursors(db, first)
    db.execute("COMMIT")
    read = [line.decode() for line in first.lines]
    log.unlink()  # gone while the pass is under way
    for batch in batches:
        read.extend(line.decode() for line in batch.lines)
        db.execute("BEGIN IMMEDIATE")
        save_cursors(db, batch)
        db.execute("COMMIT")
    assert read == _lines("a", 0, 30)


def test_file_that_vanishes_and_comes_back_resumes(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    elsewhere = tmp_path / "moved" / "app.log"
    elsewhere.parent.mkdir()
    _write(log, _lines("a", 0, 5))
    tail = _tail(db, log)
    _consume(db, tail)
    log.rename(elsewhere)  # gone (no sibling of the followed path holds it)
    _consume(db, tail)
    _consume(db, _tail(db, log))  # a restart while it is gone
    _write(elsewhere, _lines("a", 5, 8))
    elsewhere.rename(log)  # back, same file, grown
    _consume(db, _tail(db, log))
    assert _seen(db) == _lines("a", 0, 8)


def test_a_new_file_under_the_same_name_starts_from_the_beginning(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 5))
    tail = _tail(db, log)
    _consume(db, tail)
    log.unlink()
    _consume(db, tail)
    _write(log, _lines("b", 0, 3), mode="w")
    _consume(db, tail)
    assert _seen(db) == _lines("a", 0, 5) + _lines("b", 0, 3)


def test_missing_at_start_is_followed_once_it_appears(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    tail = _tail(db, log)
    assert _consume(db, tail) == []
    _write(log, _lines("a", 0, 2))
    _consume(db, tail)
    assert _seen(db) == _lines("a", 0, 2)


def test_over_long_line_is_cut_and_flagged_never_held_whole(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    long_line = '{"x": "' + "y" * 20_000 + '"}'
    _write(log, ['{"a": 0}', long_line, '{"a": 2}'])
    batches = _consume(db, _tail(db, log, max_line_bytes=5000, chunk_bytes=1024))
    lines = [(batch.first_lineno + index, line, index in batch.too_long)
             for batch in batches for index, line in enumerate(batch.lines)]
    assert [(number, flagged) for number, _, flagged in lines] == [(1, False), (2, True), (3, False)]
    assert len(lines[1][1]) == KEPT_BYTES
    assert lines[2][1] == b'{"a": 2}'


def test_carriage_returns_are_dropped(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    log.write_bytes(b'{"a": 1}\r\n{"a": 2}\r\n')
    _consume(db, _tail(db, log))
    assert _seen(db) == ['{"a": 1}', '{"a": 2}']


def test_several_logs_are_followed_apart(tmp_path: Path) -> None:
    first, second, db = tmp_path / "a.log", tmp_path / "b.log", _db(tmp_path / "store.db")
    _write(first, _lines("a", 0, 3))
    _write(second, _lines("b", 0, 2))
    tail = Tail(db, [first, second], chunk_bytes=SMALL_CHUNK)
    _consume(db, tail)
    _write(first, _lines("a", 3, 4))
    _consume(db, Tail(db, [first, second], chunk_bytes=SMALL_CHUNK))
    assert _seen(db) == _lines("a", 0, 3) + _lines("b", 0, 2) + _lines("a", 3, 4)


def test_inode_and_head_are_checkpointed(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("a", 0, 50))  # 440 bytes: the head is all of it
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("a", 50, 200))  # now over 1 KiB: the head grows to 1 KiB
    _consume(db, tail)
    row = db.execute("SELECT inode, head_len, offset, lineno, state FROM watch_offsets").fetchone()
    assert row == (os.stat(log).st_ino, 1024, log.stat().st_size, 200, "current")
