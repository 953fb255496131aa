"""The tail across several rotations between two passes: renamed files found again by inode and head among the
rotation siblings (gzipped ones by the head of their decompressed content), files rotated through the followed
name unseen found as the siblings newer than the last one known, and whatever is gone before it was read
recorded as a gap (in the store, and as an alert through the sweep's outbox), never passed over in silence."""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

from refcal.watch.alerts import JsonlSink, Outbox
from refcal.watch.sweep import Sweep, SweepSettings
from refcal.watch.tail import Batch, Tail, load_gaps, save_cursors

SMALL_CHUNK = 64
"""Bytes read at a time here, so that a few lines make many batches (and a kill can fall between them)."""


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS seen (name TEXT, lineno INTEGER, text TEXT)")
    return db


def _tail(db: sqlite3.Connection, log: Path, **options: object) -> Tail:
    return Tail(db, [log], chunk_bytes=options.pop("chunk_bytes", SMALL_CHUNK), **options)  # type: ignore[arg-type]


def _consume(db: sqlite3.Connection, tail: Tail, crash_after: int | None = None) -> list[Batch]:
    """One pass, each batch's lines committed with its cursors; with crash_after, the batch after that many is
    rolled back instead (a kill -9 between reading and committing) and the pass ends there."""
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
    return [f'{{"{prefix}": {number}, "pad": "{prefix * 3}"}}' for number in range(start, stop)]


def _shift(log: Path, keep: int) -> None:
    """logrotate's renaming: LOG.N(.gz) → LOG.N+1(.gz) from the oldest down, LOG.keep deleted."""
    for index in range(keep, 0, -1):
        for suffix in ("", ".gz"):
            older = log.with_name(f"{log.name}.{index}{suffix}")
            if older.exists():
                if index >= keep:
                    older.unlink()
                else:
                    older.rename(log.with_name(f"{log.name}.{index + 1}{suffix}"))


def _rotate(log: Path, keep: int = 9) -> None:
    """Rotation by rename: the chain shifts, LOG becomes LOG.1 (the writer then opens a new LOG)."""
    _shift(log, keep)
    log.rename(log.with_name(log.name + ".1"))


def _copytruncate(log: Path, keep: int = 9) -> None:
    """logrotate copytruncate: the chain shifts, LOG is copied to LOG.1 and truncated in place."""
    _shift(log, keep)
    shutil.copy(log, log.with_name(log.name + ".1"))
    with log.open("r+") as file:
        file.truncate(0)


def _gzip(path: Path) -> Path:
    """`gzip PATH`: PATH.gz written, PATH removed."""
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return target


def _settle(db: sqlite3.Connection, tail: Tail, passes: int = 3) -> None:
    for _ in range(passes):
        _consume(db, tail)


def _gaps(db: sqlite3.Connection, log: Path) -> list:
    return load_gaps(db, str(log.resolve()))


# --- several rotations between two passes -------------------------------------------------------------------

def test_two_renames_between_passes_count_every_line_once(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 10, 14))  # written to the first file after the pass, before its rotation
    _rotate(log)
    _write(log, _lines("mid", 0, 6), mode="w")  # a file that is the followed name only between two passes
    _rotate(log)
    _write(log, _lines("new", 0, 3), mode="w")
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 14) + _lines("mid", 0, 6) + _lines("new", 0, 3)
    names = [row[0] for row in db.execute("SELECT DISTINCT name FROM seen ORDER BY rowid")]
    assert names == ["app.log", "app.log.2", "app.log.1"]
    _settle(db, tail)
    _rotate(log)  # and once more, with both rotated files finished and forgotten: nothing is read twice
    _write(log, _lines("last", 0, 2), mode="w")
    _settle(db, tail)
    assert Counter(_seen(db)) == Counter(_lines("old", 0, 14) + _lines("mid", 0, 6) + _lines("new", 0, 3)
                                         + _lines("last", 0, 2))
    assert max(Counter(_seen(db)).values()) == 1
    assert _gaps(db, log) == []


def test_rename_then_copy_truncate_between_passes(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 8))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 8, 12))
    _rotate(log)  # old → app.log.1
    _write(log, _lines("mid", 0, 5), mode="w")
    _copytruncate(log)  # old → app.log.2, mid copied to app.log.1, app.log (mid's inode) truncated
    _write(log, _lines("new", 0, 4))
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 12) + _lines("mid", 0, 5) + _lines("new", 0, 4)
    _settle(db, tail)
    assert max(Counter(_seen(db)).values()) == 1
    assert _gaps(db, log) == []


def test_copy_truncate_then_rename_between_passes(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 8))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 8, 11))
    _copytruncate(log)  # old copied to app.log.1; its inode, truncated, takes the middle lines
    _write(log, _lines("mid", 0, 5))
    _rotate(log)  # the copy → app.log.2, the old inode (now mid) → app.log.1
    _write(log, _lines("new", 0, 2), mode="w")
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 11) + _lines("mid", 0, 5) + _lines("new", 0, 2)
    assert _gaps(db, log) == []


def test_two_copy_truncates_between_passes_lose_nothing_while_the_first_copy_is_kept(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    _write(log, _lines("old", 10, 13))
    _copytruncate(log)
    _write(log, _lines("mid", 0, 7))
    _copytruncate(log)  # the first copy is shifted to app.log.2, not lost
    _write(log, _lines("new", 0, 4))
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 13) + _lines("mid", 0, 7) + _lines("new", 0, 4)
    _settle(db, tail)
    assert max(Counter(_seen(db)).values()) == 1
    assert _gaps(db, log) == []


def test_two_copy_truncates_over_one_kept_copy_record_the_loss_as_a_gap(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    tail = _tail(db, log)
    _consume(db, tail)
    read = log.stat().st_size
    _write(log, _lines("old", 10, 13))  # only ever in the first copy, which the second one replaces
    _copytruncate(log, keep=1)
    _write(log, _lines("mid", 0, 7))
    _copytruncate(log, keep=1)
    _write(log, _lines("new", 0, 4))
    batches = _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 10) + _lines("mid", 0, 7) + _lines("new", 0, 4)
    gaps = _gaps(db, log)
    assert len(gaps) == 1
    gap = gaps[0]
    assert Path(gap.name).name == "app.log" and gap.offset == read and gap.lineno == 10
    assert gap.lost_bytes is None and gap.min_bytes == 0  # what was written after the pass is not knowable
    assert [found.gap_id for batch in batches for found in batch.gaps] == [gap.gap_id]
    assert any("truncated" in note for batch in batches for note in batch.notes)


# --- compressed siblings -------------------------------------------------------------------------------------

def test_a_rotated_file_gzipped_before_it_was_finished_is_read_on_from_the_gzip(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 10, 30))
    _rotate(log)
    _write(log, _lines("mid", 0, 5), mode="w")
    _gzip(tmp_path / "app.log.1")  # compressed (and the plain file removed) before the rest was read
    _rotate(log)  # app.log.1.gz → app.log.2.gz, mid → app.log.1
    _write(log, _lines("new", 0, 3), mode="w")
    tail = _tail(db, log)  # a restart: no handle on anything
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 30) + _lines("mid", 0, 5) + _lines("new", 0, 3)
    names = [row[0] for row in db.execute("SELECT DISTINCT name FROM seen ORDER BY rowid")]
    assert names == ["app.log", "app.log.2.gz", "app.log.1"]
    _settle(db, tail)
    _gzip(tmp_path / "app.log.1")  # the finished middle file compressed, then everything shifted again
    _rotate(log)
    _write(log, _lines("last", 0, 2), mode="w")
    _settle(db, _tail(db, log))
    assert _seen(db) == (_lines("old", 0, 30) + _lines("mid", 0, 5) + _lines("new", 0, 3)
                         + _lines("last", 0, 2))
    assert _gaps(db, log) == []


def test_a_gzip_still_being_written_is_read_as_far_as_it_goes_then_finished(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 5))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 5, 200))
    _rotate(log)
    _write(log, _lines("new", 0, 2), mode="w")
    plain = tmp_path / "app.log.1"
    packed = gzip.compress(plain.read_bytes())
    plain.unlink()
    (tmp_path / "app.log.1.gz").write_bytes(packed[: len(packed) // 2])  # the compressor is half way
    tail = _tail(db, log)
    _settle(db, tail, passes=1)
    seen = _seen(db)
    assert _lines("old", 0, 6) == seen[:6] and len(seen) < 202  # what the half decompresses to, and no more
    (tmp_path / "app.log.1.gz").write_bytes(packed)
    _settle(db, tail)
    assert Counter(_seen(db)) == Counter(_lines("old", 0, 200) + _lines("new", 0, 2))
    assert _gaps(db, log) == []


def test_a_gzip_cut_short_for_good_is_recorded_as_a_gap(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 5))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 5, 200))
    _rotate(log)
    _write(log, _lines("new", 0, 2), mode="w")
    plain = tmp_path / "app.log.1"
    packed = gzip.compress(plain.read_bytes())
    plain.unlink()
    (tmp_path / "app.log.1.gz").write_bytes(packed[: len(packed) // 2])  # the compressor died half way
    tail = _tail(db, log, settle=2)
    _settle(db, tail, passes=5)
    gaps = _gaps(db, log)
    assert len(gaps) == 1 and Path(gaps[0].name).name == "app.log.1.gz"
    assert "ends before" in gaps[0].reason
    seen = _seen(db)
    assert seen == _lines("old", 0, len(seen) - 2) + _lines("new", 0, 2)  # read as far as it goes, once


# --- gone before it was read ---------------------------------------------------------------------------------

def test_a_sibling_deleted_before_it_was_read_records_a_gap(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 10))
    _consume(db, _tail(db, log))
    read = log.stat().st_size
    _write(log, _lines("old", 10, 15))
    _rotate(log)
    _write(log, _lines("new", 0, 3), mode="w")
    (tmp_path / "app.log.1").unlink()  # removed while no sweep ran (nothing holds it open)
    tail = _tail(db, log)
    batches = _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 10) + _lines("new", 0, 3)
    gaps = _gaps(db, log)
    assert len(gaps) == 1
    assert gaps[0].offset == read and gaps[0].lineno == 10 and gaps[0].lost_bytes is None
    assert "gone" in gaps[0].reason
    assert any(found.gap_id == gaps[0].gap_id for batch in batches for found in batch.gaps)
    _settle(db, tail)
    assert len(_gaps(db, log)) == 1  # recorded once, not again on every pass
    assert [cursor.state for cursor in tail.cursors(log)] == ["current"]


def test_a_sibling_seen_but_deleted_before_it_was_read_to_its_end_records_the_unread_bytes(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 5))
    _consume(db, _tail(db, log))
    _write(log, _lines("old", 5, 60))
    _rotate(log)
    _write(log, _lines("new", 0, 3), mode="w")
    rotated = tmp_path / "app.log.1"
    size = rotated.stat().st_size
    _consume(db, _tail(db, log), crash_after=1)  # one batch of the rotated file committed, then killed
    offset = next(row[0] for row in db.execute("SELECT offset FROM watch_offsets WHERE name = ?",
                                               (str(rotated.resolve()),)))
    assert offset < size
    rotated.unlink()
    _consume(db, _tail(db, log))
    gaps = _gaps(db, log)
    assert len(gaps) == 1
    assert gaps[0].offset == offset and gaps[0].min_bytes == size - offset
    assert Path(gaps[0].name).name == "app.log.1"
    assert _seen(db)[-3:] == _lines("new", 0, 3)


def test_a_rotated_file_missing_from_the_middle_of_the_chain_is_recorded_as_a_gap(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    _write(log, _lines("old", 0, 4))
    tail = _tail(db, log)
    _consume(db, tail)
    _rotate(log)
    _write(log, _lines("mid", 0, 5), mode="w")
    _rotate(log)
    _write(log, _lines("new", 0, 2), mode="w")
    (tmp_path / "app.log.1").unlink()  # the middle file, deleted before any pass saw it
    _consume(db, tail)
    assert _seen(db) == _lines("old", 0, 4) + _lines("new", 0, 2)
    gaps = _gaps(db, log)
    assert len(gaps) == 1 and Path(gaps[0].name).name == "app.log.1" and gaps[0].lost_bytes is None


def test_a_gap_is_stored_with_the_sweep_and_raises_an_alert(tmp_path: Path) -> None:
    log = tmp_path / "app.log"

    def lines(start: int, stop: int) -> list[str]:
        return [json.dumps({"request": {"messages": [{"role": "user", "content": f"Name a colour, please ({n})."}]},
                            "response": {"choices": [{"message": {"role": "assistant",
                                                                  "content": f"Blue is a colour ({n})."}}]}})
                for n in range(start, stop)]

    def sweep() -> Sweep:
        return Sweep(SweepSettings(logs=[log], store=tmp_path / "store.db", judge="markers", window=50),
                     sinks=[JsonlSink(tmp_path / "alerts.jsonl")])

    _write(log, lines(0, 20))
    with sweep() as first:
        first.run_pass()
    _write(log, lines(20, 25))
    _rotate(log)
    _write(log, lines(25, 30), mode="w")
    (tmp_path / "app.log.1").unlink()
    with sweep() as second:
        report = second.run_pass()
        assert second.state.totals.lines == 25 and second.state.totals.gaps == 1
        assert report.gaps == 1 and any("gone" in note for note in report.notes)
    with Outbox(tmp_path / "store.db") as outbox:
        alerts = outbox.alerts()
    assert len(alerts) == 1 and alerts[0].breach is None and alerts[0].gap is not None
    assert alerts[0].gap.offset > 0 and Path(alerts[0].gap.file).name == "app.log"
    assert "app.log" in alerts[0].text() and "lost" in alerts[0].text()
    delivered = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [alert["id"] for alert in delivered] == [alerts[0].id]
    with sweep() as third:  # a further pass neither records the gap again nor alerts twice
        third.run_pass()
        assert third.state.totals.gaps == 1
    with Outbox(tmp_path / "store.db") as outbox:
        assert len(outbox.alerts()) == 1


# --- restarts in the middle of rotations -------------------------------------------------------------------

def test_restarts_in_the_middle_of_rotations_lose_and_repeat_nothing(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    written = _lines("a", 0, 30)
    _write(log, written)
    _consume(db, _tail(db, log), crash_after=2)  # killed in the first pass
    _write(log, _lines("a", 30, 45))
    _rotate(log)
    _write(log, _lines("b", 0, 20), mode="w")
    _consume(db, _tail(db, log), crash_after=3)  # restarted, and killed while finishing the rotated file
    _rotate(log)
    _write(log, _lines("c", 0, 25), mode="w")
    _gzip(tmp_path / "app.log.2")
    _consume(db, _tail(db, log), crash_after=4)  # restarted with a's rest compressed, b rotated unseen
    _copytruncate(log)
    _write(log, _lines("d", 0, 10))
    _consume(db, _tail(db, log), crash_after=1)
    _write(log, _lines("d", 10, 12))
    tail = _tail(db, log)
    _settle(db, tail, passes=4)
    expected = _lines("a", 0, 45) + _lines("b", 0, 20) + _lines("c", 0, 25) + _lines("d", 0, 12)
    assert Counter(_seen(db)) == Counter(expected)
    assert _gaps(db, log) == []


def test_a_randomised_rotating_writer_with_kills_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """Rotation by rename, copy-truncate and compression in random order, with passes killed at random and
    restarted from the database; never more rotations between two completed passes than files are kept, so
    nothing is ever gone before it was read and every line must be seen exactly once."""
    for seed in range(6):
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        log, db = folder / "app.log", _db(folder / "store.db")
        rng = random.Random(seed)
        written: list[str] = []
        tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))
        _consume(db, tail)  # started before the log exists: everything it will hold is to be read
        since_pass = 0
        for _ in range(60):
            action = rng.random()
            if action < 0.45 or not log.exists():
                batch = _lines(f"s{seed}", len(written), len(written) + rng.randint(1, 8))
                _write(log, batch)
                written += batch
            elif action < 0.6 and since_pass < 3:
                _rotate(log, keep=6)
                since_pass += 1
            elif action < 0.7 and since_pass < 3:
                _copytruncate(log, keep=6)
                since_pass += 1
            elif action < 0.75:
                plain = [path for path in folder.glob("app.log.[2-9]") if path.is_file()]
                if plain:
                    _gzip(rng.choice(plain))  # delaycompress: only files rotated twice or more
            elif action < 0.88:
                crash = rng.choice([None, 0, 1, 3])
                _consume(db, tail, crash_after=crash)
                if crash is None:
                    since_pass = 0
                else:
                    tail.close()
                    tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))  # killed: a new process
            else:
                tail.close()
                tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))  # restarted between passes
        _settle(db, tail, passes=4)
        tail.close()
        seen = Counter(_seen(db))
        assert seen == Counter(written), f"seed {seed}: missing {sorted(set(written) - set(seen))[:5]}, " \
                                         f"repeated {[line for line, count in seen.items() if count > 1][:5]}"
        assert _gaps(db, log) == [], f"seed {seed}"


class _Writer:
    """An application writing the log: it holds its file open (O_APPEND), so after a rename it goes on writing
    to the rotated file until it reopens, and it may leave its last line half written for a while."""

    def __init__(self, log: Path, prefix: str) -> None:
        self.log, self.prefix = log, prefix
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        self.written: list[str] = []
        self.numbered = 0
        self.half: tuple[str, str] | None = None
        """(the whole line, what is still to write of it)."""

    def write(self, rng: random.Random) -> None:
        count = rng.randint(1, 6)
        batch = _lines(self.prefix, self.numbered, self.numbered + count)
        self.numbered += count
        self.finish_line()
        data = "".join(line + "\n" for line in batch)
        self.written += batch
        if rng.random() < 0.2:
            line = _lines(self.prefix, self.numbered, self.numbered + 1)[0]
            self.numbered += 1
            cut = rng.randint(1, len(line) - 1)
            data += line[:cut]
            self.half = (line, line[cut:] + "\n")
        os.write(self.fd, data.encode())

    def finish_line(self) -> None:
        if self.half is not None:
            os.write(self.fd, self.half[1].encode())
            self.written.append(self.half[0])
            self.half = None

    def stale(self) -> bool:
        """Still writing to a file that is no longer the log."""
        return not self.log.exists() or os.fstat(self.fd).st_ino != self.log.stat().st_ino

    def reopen(self) -> None:
        self.finish_line()
        os.close(self.fd)
        self.fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def close(self) -> None:
        self.finish_line()
        os.close(self.fd)


def test_a_writer_that_keeps_its_file_open_across_rotations_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """The writer goes on writing to a renamed file until it reopens (at most one pass later), leaves lines
    half written, and copy-truncate truncates under it. Passes are killed and restarted at random; every line
    must come out exactly once, whole."""
    for seed in range(8):
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        log, db = folder / "app.log", _db(folder / "store.db")
        rng = random.Random(1000 + seed)
        tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))
        _consume(db, tail)
        writer = _Writer(log, f"w{seed}")
        since_pass = stale_passes = 0
        for _ in range(80):
            action = rng.random()
            if action < 0.4:
                writer.write(rng)
            elif action < 0.52 and since_pass < 2 and log.exists():
                _rotate(log, keep=7)
                since_pass += 1
                if rng.random() < 0.5:
                    writer.reopen()
            elif action < 0.6 and since_pass < 2 and writer.half is None and log.exists():
                _copytruncate(log, keep=7)
                since_pass += 1
            elif action < 0.66:
                plain = [path for path in folder.glob("app.log.[3-9]") if path.is_file()]
                if plain:
                    _gzip(rng.choice(plain))
            elif action < 0.85:
                if writer.stale():
                    stale_passes += 1
                    if stale_passes > 1:  # a writer reopens soon after a rotation
                        writer.reopen()
                        stale_passes = 0
                crash = rng.choice([None, None, 0, 1, 2, 5])
                _consume(db, tail, crash_after=crash)
                if crash is None:
                    since_pass = 0
                else:
                    tail.close()
                    tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))
            else:
                tail.close()
                tail = _tail(db, log, chunk_bytes=rng.choice([64, 200, 4096]))
        writer.close()
        _settle(db, tail, passes=5)
        tail.close()
        seen, written = Counter(_seen(db)), writer.written
        wrong = [line for line, count in seen.items() if count > 1 or line not in written]
        assert seen == Counter(written), f"seed {seed}: missing {sorted(set(written) - set(seen))[:5]}, " \
                                         f"extra or repeated {wrong[:5]}"
        assert _gaps(db, log) == [], f"seed {seed}"


# --- where rotated files go ------------------------------------------------------------------------------------

def test_a_configured_sibling_pattern_finds_rotations_in_another_folder(tmp_path: Path) -> None:
    log, db = tmp_path / "app.log", _db(tmp_path / "store.db")
    archive = tmp_path / "archive"
    archive.mkdir()
    _write(log, _lines("old", 0, 6))
    tail = _tail(db, log, siblings=["archive/{name}.*"])
    _consume(db, tail)
    _write(log, _lines("old", 6, 9))
    log.rename(archive / "app.log.1")
    _write(log, _lines("mid", 0, 4), mode="w")
    (archive / "app.log.1").rename(archive / "app.log.2")
    log.rename(archive / "app.log.1")
    _write(log, _lines("new", 0, 2), mode="w")
    _consume(db, _tail(db, log, siblings=["archive/{name}.*"]))  # after a restart too
    assert _seen(db) == _lines("old", 0, 9) + _lines("mid", 0, 4) + _lines("new", 0, 2)
    assert _gaps(db, log) == []


def test_two_renames_next_to_another_followed_log_take_it_for_no_rotated_copy(tmp_path: Path) -> None:
    log, other, db = tmp_path / "app.log", tmp_path / "app-2.log", _db(tmp_path / "store.db")
    _write(log, _lines("one", 0, 3))
    _write(other, _lines("two", 0, 3))
    tail = Tail(db, [log, other], chunk_bytes=SMALL_CHUNK)
    _consume(db, tail)
    _rotate(log)
    _write(log, _lines("mid", 0, 4), mode="w")
    _rotate(log)
    _write(log, _lines("one", 3, 5), mode="w")
    _write(other, _lines("two", 3, 6))  # grows meanwhile: `app-*` names it, but it is followed in its own right
    _settle(db, tail)
    assert Counter(_seen(db)) == Counter(_lines("one", 0, 5) + _lines("mid", 0, 4) + _lines("two", 0, 6))
