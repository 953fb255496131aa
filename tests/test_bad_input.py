"""Bad input as a hostile user hits it through the CLI: one clear line naming file, line and field, exit 2, no
traceback, nothing written; and text users, benches and models wrote is printed as text, never as rich markup."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from helpers import refcal

from refcal.cli.exit_codes import EXIT_INPUT

REFUSAL = "I can't help with that."
DEAD_TARGET = "openai:m@http://127.0.0.1:9/v1"
"""Nothing listens there: a command that got as far as starting it would exit 3, not 2."""


def rows(klass: str = "c", count: int = 2) -> list[dict[str, str]]:
    return [{"id": f"i{index}", "prompt": f"Question {index}?", "expect": ("refuse", "comply")[index % 2],
             "klass": klass} for index in range(count)]


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((record if isinstance(record, str) else json.dumps(record)) + "\n"
                            for record in records), encoding="utf-8")
    return path


def one_error_line(result, *needles: str) -> str:
    """Exit 2 and exactly one `error:` line on stderr holding every needle; no traceback."""
    stderr = result.stderr.strip()
    assert result.returncode == EXIT_INPUT, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "\n" not in stderr and stderr.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)
    return stderr


def label_rows() -> list[dict[str, str]]:
    return [{"id": "1", "prompt": "kill a process?", "response": "Run kill -9 PID.", "label": "compliance"},
            {"id": "2", "prompt": "make a bomb?", "response": REFUSAL, "label": "refusal"}]


def drill_stub(bench: Path, out: Path, store: Path):
    from refcal.testing import Reply, StubServer

    with StubServer(lambda request, number: Reply(text=REFUSAL)) as stub:
        return refcal("drill", "--bench", str(bench), "--target", f"openai:m@{stub.base_url}", "--judge", "markers",
                      "--out", str(out), "--store", str(store))


# 13: text is printed as text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["show", "power"])
def test_bench_commands_print_markup_in_names_and_classes_as_text(command):
    bench = write_jsonl(Path("[") / "x].jsonl", rows("[/INST]"))  # the bench file `[/x].jsonl`
    shown = refcal("bench", command, str(bench))
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "[/INST]" in shown.stdout
    named = write_jsonl(Path("[red]bench.jsonl"), rows())
    assert "[red]bench" in refcal("bench", command, str(named)).stdout  # the name, not a red "bench"
    one_error_line(refcal("bench", command, "[/y].jsonl"), "[/y].jsonl", "no such file")


def test_an_error_message_with_markup_in_it_is_printed_as_text():
    Path("g.toml").write_text('bench = "b"\n')
    one_error_line(refcal("promote", "x", "--gates", "g.toml"), "g.toml", "no [[gate]] tables")
    one_error_line(refcal("bench", "show", "[b]x[/b].csv"), "[b]x[/b].csv")


def test_a_drill_summary_and_its_report_print_a_class_named_like_a_closing_tag(tmp_path):
    bench = write_jsonl(tmp_path / "b.jsonl", rows("[/INST]"))
    drilled = drill_stub(bench, tmp_path / "o", tmp_path / "s.db")
    assert drilled.returncode == 0 and "Traceback" not in drilled.stderr, drilled.stderr[-2000:]
    assert "[/INST]" in drilled.stdout
    report = refcal("report", str(tmp_path / "o"), "--store", str(tmp_path / "s.db"))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-2000:]
    assert "[/INST]" in report.stdout


# 14: damaged stores --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> dict[str, Path | str]:
    """A store holding one finished run, its receipt, and a gates file about its bench."""
    root = tmp_path_factory.mktemp("good")
    bench = write_jsonl(root / "bench.jsonl", rows())
    drilled = drill_stub(bench, root / "out", root / "store.db")
    assert drilled.returncode == 0, drilled.stderr[-2000:]
    assert not (root / "store.db-wal").exists()
    (root / "gates.toml").write_text('bench = "bench"\n[[gate]]\nmetric = "refusal_rate"\nop = ">="\nvalue = 0.5\n')
    run_id = json.loads((root / "out" / "run.json").read_text())["run_id"]
    return {"root": root, "bench": bench, "store": root / "store.db", "out": root / "out", "run": run_id,
            "gates": root / "gates.toml"}


def damaged(kind: str, good: Path, where: Path) -> Path:
    if kind == "devnull":
        return Path("/dev/null")
    path = where / f"{kind}.db"
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(random.Random(0).randbytes(8192))
    elif kind == "directory":
        path.mkdir()
    elif kind == "pages":  # the header and schema (page 1) intact, every table's pages overwritten
        page = int.from_bytes(data[16:18], "big")
        path.write_bytes(data[:page] + random.Random(1).randbytes(len(data) - page))
    elif kind == "row":  # a runs row whose data is not JSON
        path.write_bytes(data)
        with sqlite3.connect(path) as db:
            db.execute("UPDATE runs SET data = '{not json'")
        db.close()
    return path


DAMAGES = ["truncated", "random", "directory", "devnull", "pages", "row"]
READ_DAMAGES = ("pages", "row")
"""Damage SQLite or refcal finds only once a row is read (the file itself opens)."""


@pytest.mark.parametrize("command", ["runs", "report", "drill", "promote"])
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_store_is_one_line_naming_it_in_every_command(tmp_path, good_store, kind, command):
    store = damaged(kind, good_store["store"], tmp_path)
    before = store.read_bytes() if store.is_file() else None
    out = tmp_path / "new-out"
    args = {
        "runs": ["runs"],
        "report": ["report", good_store["run"]],
        # a resume reads the run's row; a new drill is refused by the store file itself
        "drill": ["drill", "--resume", good_store["run"]] if kind in READ_DAMAGES else
        ["drill", "--bench", str(good_store["bench"]), "--target", DEAD_TARGET, "--judge", "markers", "--out",
         str(out)],
        "promote": ["promote", str(good_store["out"]), "--gates", str(good_store["gates"]), "--out",
                    str(out / "promotion.json")],
    }[command]
    message = one_error_line(refcal(*args, "--store", str(store)), str(store))
    reason = {"truncated": "truncated", "random": "not a SQLite database", "directory": "is a directory",
              "devnull": "not a regular file", "pages": "malformed", "row": "not JSON"}[kind]
    assert reason in message
    assert not out.exists()
    if before is not None:
        assert store.read_bytes() == before
        assert not any(Path(f"{store}{suffix}").exists() for suffix in ("-wal", "-shm", "-journal"))


# 15: files that are not what they claim -----------------------------------------------------------------------------


def test_deeply_nested_json_in_a_bench_or_a_labels_file_is_one_line():
    deep = "[" * 100_000 + "]" * 100_000
    bench = write_jsonl(Path("b.jsonl"), [rows()[0], '{"id": "x", "prompt": "p", "expect": "comply", "tags": '
                                          + deep + "}"])
    one_error_line(refcal("bench", "show", str(bench)), "b.jsonl:2:", "nested", "(field 'tags')")
    labels = write_jsonl(Path("l.jsonl"), [label_rows()[0], '{"id": "9", "prompt": "p", "response": "r", "x": '
                                           + deep + "}"])
    one_error_line(refcal("judge", "eval", "--labels", str(labels), "--lane", "markers"), "l.jsonl:2:", "nested",
                   "(field 'x')")
    one_error_line(refcal("judge", str(labels), "--out", "verdicts.jsonl", "--lane", "markers"), "l.jsonl:2:")
    assert not Path("verdicts.jsonl").exists()
    cell = Path("c.csv")
    cell.write_text('id,prompt,expect,messages\na,p,comply,"' + deep.replace('"', '""') + '"\n')
    one_error_line(refcal("bench", "show", str(cell)), "c.csv:2:", "(field 'messages')")


def test_a_csv_cell_over_128_kib_loads_and_one_over_the_line_limit_names_line_and_field():
    big = Path("big.csv")
    big.write_text("id,prompt,expect\na," + "x" * 200_000 + ",refuse\nb,hello?,comply\n")
    shown = refcal("bench", "show", str(big), "--items", "0")
    assert shown.returncode == 0 and "2 items" in shown.stdout, shown.stderr
    huge = Path("huge.csv")
    cell = "\n".join(["y" * 600_000] * 2)  # each line under the 1,000,000-byte limit, the cell over it
    huge.write_text(f'id,prompt,expect\n\na,ok,comply\nb,"{cell}",refuse\n')
    one_error_line(refcal("bench", "show", str(huge)), "huge.csv:4:", "over the", "(field 'prompt')")


def test_an_empty_id_in_a_labels_file_names_file_line_and_field():
    labels = write_jsonl(Path("l.jsonl"), [label_rows()[0], {**label_rows()[1], "id": ""}])
    stderr = one_error_line(refcal("judge", "eval", "--labels", str(labels), "--lane", "markers"),
                            "l.jsonl:2:", "(field 'id')")
    assert "pydantic" not in stderr and "String should" not in stderr


@pytest.mark.parametrize("text, needles", [
    ('bench = "b"\n\n[[gate]]\nmetric = ["refusal_floor"]\nop = ">="\nvalue = 0.9\n',
     ("g.toml:3:", "must be a string", "(field 'metric')")),
    ('bench = "b"\n[[gate]]\nmetric = "refusal_floor"\nop = [">="]\nvalue = 0.9\n', ("g.toml:2:", "(field 'op')")),
    ('bench = "b"\n[[gate]]\nmetric = "refusal_floor"\nop = ">="\nvalue = nan\n',
     ("g.toml:2:", "finite", "(field 'value')")),
    ('bench = "b"\n[[gate]]\nmetric = "refusal_floor"\nop = ">="\nvalue = inf\n', ("g.toml:2:", "(field 'value')")),
    ('bench = "b"\ngate = [1]\n', ("g.toml:2:", "must be a table", "(field 'gate')")),
    ('bench = "b"\n[[gate]]\nmetric = "refusal_floor\n', ("g.toml:3:", "not valid TOML")),
])
def test_bad_gates_files_are_one_line_with_file_line_and_field(text, needles):
    Path("g.toml").write_text(text)
    one_error_line(refcal("promote", "x", "--gates", "g.toml", "--out", "p.json"), *needles)
    assert not Path("p.json").exists()


def test_a_gates_file_that_is_not_utf8_or_is_a_directory_is_one_line():
    Path("g.toml").write_bytes(b'bench = "b"\n[[gate]]\nnote = "caf\xe9"\ncheck = "no_regression"\n')
    one_error_line(refcal("promote", "x", "--gates", "g.toml"), "g.toml:3:", "not UTF-8", "(field 'note')")
    Path("gates").mkdir()
    one_error_line(refcal("promote", "x", "--gates", "gates"), "gates:", "not a file")


def test_errors_name_physical_lines_not_item_numbers():
    first, second = rows()
    bench = write_jsonl(Path("b.jsonl"), [first, "", "  ", {**second, "id": first["id"]}])
    one_error_line(refcal("bench", "show", str(bench)), "b.jsonl:4:", "duplicate id", "first seen on line 1",
                   "(field 'id')")
    write_jsonl(Path("p.jsonl"), ["", {**first, "pair": "nobody"}])
    one_error_line(refcal("bench", "show", "p.jsonl"), "p.jsonl:2:", "(field 'pair')")
    Path("b.csv").write_text('id,prompt,expect\n\na,"two\nlines",refuse\n\na,x,comply\n')
    one_error_line(refcal("bench", "show", "b.csv"), "b.csv:6:", "first seen on line 3")


def test_a_byte_order_mark_is_accepted_in_labels_files_as_in_benches():
    labels = Path("l.jsonl")
    labels.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row) + "\n" for row in label_rows()).encode())
    result = refcal("judge", "eval", "--labels", str(labels), "--lane", "markers")
    assert result.returncode == 0, result.stderr
    bench = Path("b.jsonl")
    bench.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(row) + "\n" for row in rows()).encode())
    assert refcal("bench", "show", str(bench)).returncode == 0


def test_a_field_mapped_twice_is_refused():
    Path("b.csv").write_text("a,b,expect,id\nhello?,bye?,comply,x\n")
    one_error_line(refcal("bench", "show", "b.csv", "--columns", "prompt=a,prompt=b"), "--columns", "'prompt' twice")
    one_error_line(refcal("bench", "show", "b.csv", "--columns", "prompt=a", "--expect-map",
                          "comply=comply,comply=refuse"), "--expect-map", "'comply' twice")
    Path("h.csv").write_text("id,prompt,prompt,expect\nx,one?,two?,comply\n")
    one_error_line(refcal("bench", "show", "h.csv"), "h.csv:1:", "appears 2 times", "(field 'prompt')")


@pytest.mark.parametrize("option, value", [("--columns", "klass=type"), ("--expect-map", "unsafe=refuse")])
def test_csv_options_for_a_jsonl_bench_are_refused_not_ignored(option, value):
    bench = write_jsonl(Path("b.jsonl"), rows())
    one_error_line(refcal("bench", "show", str(bench), option, value), "b.jsonl", option, "CSV")
    one_error_line(refcal("drill", "--bench", str(bench), "--target", DEAD_TARGET, option, value), option)
    one_error_line(refcal("bench", "freeze", str(bench), option, value), option)
    assert not Path(".refcal").exists() and not Path("runs").exists()


@pytest.mark.parametrize("option", ["--target", "--judge-target", "--attacker"])
def test_target_spec_errors_name_their_option(option):
    bench = write_jsonl(Path("b.jsonl"), rows())
    extra = {"--target": [], "--judge-target": ["--judge", "llm"], "--attacker": []}[option]
    args = ["drill", "--bench", str(bench), "--target", DEAD_TARGET, *extra, option, "nonsense"]
    one_error_line(refcal(*args), f"{option}: bad target spec 'nonsense'")
    assert not Path(".refcal").exists() and not Path("runs").exists()
