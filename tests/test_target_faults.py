"""A hostile or broken server, hit through the CLI as a user would: echoed keys never kept, credentials in the
URL refused, oddly typed answers recorded as errors, trickled answers cut at the try's deadline, huge answers
capped in what is kept."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import make_bench, refcal

from refcal.judges import MarkersJudge
from refcal.run.session import new_run
from refcal.store.runs import Store
from refcal.targets import OpenAITarget
from refcal.testing import Reply, StubServer, chat_body

KEY = "sk-probe-Zq9Xw8Vu7Ts6Rr5Qp4On3Mm2Lk1Jj0"
KEY_ENV = "REFCAL_PROBE_KEY"
STORE = Path(".refcal") / "refcal.db"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, KEY_ENV: KEY, **extra}


def basic(user: str) -> str:
    return base64.b64encode(f"{user}:{KEY}".encode()).decode()


def by_prompt(replies: list[Reply]):
    """Each distinct prompt gets the next reply of `replies` (in turn), on every try: a persistent fault."""
    seen: dict[str, int] = {}

    def behaviour(request, number):
        prompt = request["messages"][-1]["content"]
        index = seen.setdefault(prompt, len(seen))
        return replies[index % len(replies)]
    behaviour.seen = seen
    return behaviour


def drill(stub: StubServer, *args: str, environ: dict[str, str] | None = None):
    return refcal("drill", "--target", f"openai:m@{stub.base_url}", "--judge", "markers", "--api-key-env", KEY_ENV,
                  "--out", "o", *args, env=environ or env())


def run_attempts(out: str = "o"):
    run_id = json.loads((Path(out) / "run.json").read_text())["run_id"]
    with Store(STORE) as store:
        return store.get_run(run_id), list(store.attempts(run_id))


def kept_files(out: str = "o") -> list[Path]:
    """Every file refcal wrote for the run: its output folder and the store (with its WAL)."""
    files = [path for path in Path(out).rglob("*") if path.is_file()]
    return files + [path for path in STORE.parent.glob(STORE.name + "*") if path.is_file()]


def test_a_key_the_server_echoes_is_never_kept():
    echo = f"bad key {KEY}; you sent Authorization: Bearer {KEY} (Basic {basic('user')} / {basic('apikey')})"
    behaviour = by_prompt([
        Reply(status=401, body=json.dumps({"error": {"message": echo}}).encode()),
        Reply(status=500, body=echo.encode()),
        Reply(text=f"I can't help with that. Your key {KEY} is no secret; Basic {basic('me')}"),
        Reply(body=json.dumps({"choices": [{"message": {"role": "assistant", "content": f"Sure: {KEY}"},
                                            "finish_reason": f"stop ({KEY})"}]}).encode()),
    ])
    with StubServer(behaviour) as stub:
        result = drill(stub, "--limit", "8")
    assert result.returncode == 4, result.stderr
    run, attempts = run_attempts()
    assert run.status == "complete" and len(attempts) == 8
    assert sum(attempt.is_error for attempt in attempts) == 4
    assert all("[secret]" in (attempt.error or attempt.response) for attempt in attempts)
    forms = [KEY, basic("user"), basic("apikey"), basic("me")]
    for path in kept_files():
        data = path.read_bytes()
        assert not any(form.encode() in data for form in forms), path
    assert not any(form in result.stdout + result.stderr for form in forms)


@pytest.mark.parametrize("url", ["http://user:{key}@127.0.0.1:{port}/v1", "http://127.0.0.1:{port}/v1?api_key={key}",
                                 "http://{key}@127.0.0.1:{port}/v1"], ids=["userinfo", "query", "user-only"])
def test_credentials_in_the_base_url_are_refused(url):
    with StubServer(lambda request, number: Reply(text="Sure.")) as stub:
        target = url.format(key=KEY, port=stub.port)
        result = refcal("drill", "--limit", "2", "--target", f"openai:m@{target}", "--judge", "markers",
                        "--out", "o", env=env())
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--api-key-env" in lines[0]
    assert KEY not in result.stdout + result.stderr
    assert stub.chat_requests == 0 and not Path("o").exists()
    assert not any(KEY.encode() in path.read_bytes() for path in kept_files())


def odd_body(**changes) -> bytes:
    body = json.loads(chat_body("Sure, here you go."))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    return json.dumps(body).encode()


ODD = {
    "usage is a string": (odd_body(usage="lots"), "usage is a string"),
    "finish_reason is a number": (odd_body(choices__0__finish_reason=7), "finish_reason is a number"),
    "fractional tokens": (odd_body(usage__prompt_tokens=2.5), "usage.prompt_tokens"),
    "negative tokens": (odd_body(usage__completion_tokens=-3), "usage.completion_tokens"),
    "no choices": (odd_body(choices=[]), "choices is a list"),
    "null message": (odd_body(choices__0__message=None), "message is null"),
    "content a number": (odd_body(choices__0__message__content=42), "content is a number"),
    "content a list": (odd_body(choices__0__message__content=[]), "content is a list"),
    "not JSON": (b"<html>502 Bad Gateway</html>", "malformed response"),
    "a JSON list": (b"[1, 2, 3]", "the body is a list"),
}


def test_oddly_typed_answers_are_recorded_as_errors_and_the_drill_completes():
    cases = list(ODD.values())
    behaviour = by_prompt([Reply(body=body) for body, _ in cases])
    with StubServer(behaviour) as stub:
        result = drill(stub, "--limit", str(len(cases)), "--concurrency", str(len(cases)))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    run, attempts = run_attempts()
    assert run.status == "complete" and len(attempts) == len(cases)
    for attempt in attempts:
        _, reason = cases[behaviour.seen[attempt.variant.prompt]]
        assert attempt.is_error and attempt.verdict is None and attempt.response is None
        assert "malformed response" in attempt.error and reason in attempt.error, attempt.error
        assert "after 5 tries" in attempt.error  # retried first
    receipt = json.loads(Path("o/receipt.json").read_text())
    assert receipt["counts"]["errors"] == len(cases)


def test_a_resumed_run_meets_oddly_typed_answers_and_completes():
    cases = list(ODD.values())[:4]
    with StubServer(by_prompt([Reply(body=body) for body, _ in cases])) as stub:
        with Store(STORE) as store:  # a run planned and left before any attempt, as an interrupted drill leaves it
            target = OpenAITarget("m", stub.base_url)
            run = new_run(store, make_bench(len(cases)), target, MarkersJudge(), target_spec=target.description,
                          out_root=Path("runs"), out_dir=Path("o"), concurrency=4, use_cache=False)
        result = refcal("drill", "--resume", run.run_id, env=env())
    assert result.returncode == 4, result.stdout + result.stderr
    resumed, attempts = run_attempts()
    assert resumed.status == "complete" and len(attempts) == len(cases)
    assert all(attempt.is_error and "malformed response" in attempt.error for attempt in attempts)


def test_a_trickling_server_is_cut_at_the_deadline_of_the_try():
    """One byte every 0.3 s for 10 s: each read is quick, so only a deadline over the whole try ends it."""
    with StubServer(lambda request, number: Reply(text="Sure.", trickle_s=0.3, trickle_for_s=10.0)) as stub:
        result = drill(stub, "--limit", "1", environ=env(REFCAL_TIMEOUT_S="1"))
    assert result.returncode == 4, result.stdout + result.stderr
    _, [attempt] = run_attempts()
    assert attempt.is_error and "deadline" in attempt.error and "within 1 s" in attempt.error, attempt.error


def test_a_bad_deadline_setting_is_refused():
    with StubServer(lambda request, number: Reply(text="Sure.")) as stub:
        result = drill(stub, "--limit", "1", environ=env(REFCAL_TIMEOUT_S="soon"))
    assert result.returncode == 2 and "REFCAL_TIMEOUT_S" in result.stderr and stub.chat_requests == 0


def test_a_huge_answer_is_capped_in_what_is_kept():
    full = "I can't help with that. " + "x" * 2_000_000
    digest = hashlib.sha256(full.encode()).hexdigest()
    with StubServer(lambda request, number: Reply(text=full)) as stub:
        result = drill(stub, "--limit", "2", environ=env(REFCAL_MAX_RESPONSE_BYTES="4096"))
    assert result.returncode == 0, result.stdout + result.stderr
    _, attempts = run_attempts()
    for attempt in attempts:
        assert len(attempt.response.encode()) <= 4096
        assert attempt.response.startswith("I can't help with that. xxx")
        assert "response truncated" in attempt.response and f"of {len(full):,} bytes" in attempt.response
        assert digest in attempt.response
        assert attempt.verdict is not None and attempt.verdict.label == "refusal"  # judged on the capped text
    assert Path("o/report.html").stat().st_size < 200_000
    assert sum(path.stat().st_size for path in kept_files()) < 2_000_000
    assert not any(b"x" * 8192 in path.read_bytes() for path in kept_files())


def test_a_bad_cap_setting_is_refused():
    with StubServer(lambda request, number: Reply(text="Sure.")) as stub:
        result = drill(stub, "--limit", "1", environ=env(REFCAL_MAX_RESPONSE_BYTES="lots"))
    assert result.returncode == 2 and "REFCAL_MAX_RESPONSE_BYTES" in result.stderr
