"""The command line on bad input, secrets and the HTML report, through real subprocesses."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers import refcal

from refcal.receipts import build_receipt
from refcal.records import Attempt, Message, RunRecord, Variant, Verdict
from refcal.report.html import render_html
from refcal.testing import Reply, StubServer

SECRET = "sk-planted-secret-5f1c2e9a7b"


def test_malformed_bench_stops_before_any_request_and_creates_no_run(tmp_path):
    bench = tmp_path / "bad.jsonl"
    bench.write_text('{"id": "a", "prompt": "hi", "expect": "comply"}\n{"id": "b", "prompt": "x", "expect": 3}\n')
    with StubServer(lambda request, number: Reply()) as stub:
        result = refcal("drill", "--bench", str(bench), "--target", f"openai:stub@{stub.base_url}")
    assert result.returncode == 2
    assert "bad.jsonl:2" in result.stderr and "expect" in result.stderr
    assert stub.chat_requests == 0
    assert not Path("runs").exists()


def test_bad_target_spec(tmp_path):
    result = refcal("drill", "--target", "openai:no-url")
    assert result.returncode == 2 and "expected openai:MODEL@" in result.stderr


def test_unreachable_server_exits_3_without_a_run(tmp_path):
    result = refcal("drill", "--target", "openai:m@http://127.0.0.1:9/v1", "--limit", "2")
    assert result.returncode == 3 and "cannot reach" in result.stderr
    assert not Path("runs").exists()


def test_api_key_never_lands_in_any_output(tmp_path):
    env = {**os.environ, "MY_PROVIDER_KEY": SECRET}
    with StubServer(lambda request, number: Reply(text="I can't help with that.")) as stub:
        result = refcal("drill", "--bench", "starter", "--limit", "4", "--target", f"openai:m@{stub.base_url}",
                        "--api-key-env", "MY_PROVIDER_KEY", "--out", "out", env=env)
        sent = stub.chat_requests
    assert result.returncode == 0, result.stderr
    assert sent == 4
    outputs = [result.stdout, result.stderr]
    outputs += [path.read_bytes().decode("utf-8", "replace") for path in Path(".").rglob("*") if path.is_file()]
    assert not any(SECRET in text for text in outputs)
    receipt = json.loads(Path("out/receipt.json").read_text())
    assert receipt["target"]["fingerprint"]["kind"] == "openai"


def test_key_is_sent_to_the_server(tmp_path):
    """The planted key must really be used, or the test above could pass by never reading it."""
    import asyncio

    from refcal.targets import OpenAITarget

    captured = {}
    with StubServer(lambda request, number: Reply()) as stub:
        target = OpenAITarget("m", stub.base_url, api_key_env="MY_PROVIDER_KEY")
        os.environ["MY_PROVIDER_KEY"] = SECRET
        try:
            async def go():
                async with target:
                    captured.update(target._client.headers)
            asyncio.run(go())
        finally:
            del os.environ["MY_PROVIDER_KEY"]
    assert captured["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in target.fingerprint.model_dump_json() and SECRET not in target.description


def test_script_in_a_response_is_inert_in_the_html_report():
    hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    variant = Variant(id="v1", item_id="v1", messages=(Message(role="user", content="<b>bold</b> prompt"),),
                      expect="refuse", klass="<i>class</i>")
    attempt = Attempt(variant=variant, response=hostile, verdict=Verdict(label="compliance", score=0.9,
                                                                          lane="markers"))
    run = RunRecord(bench_name="b", bench_digest="sha256:x", items=[], target_spec="t", fingerprint={},
                    judge_name="markers", judge_version="1", concurrency=1, out_dir=".")
    page = render_html(build_receipt(run, [attempt]), [attempt])
    assert "<script" not in page and "<img" not in page and "<b>bold" not in page and "<i>class" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "default-src 'none'" in page


def test_bench_show_and_list():
    shown = refcal("bench", "show", "starter", "--items", "2")
    assert shown.returncode == 0 and "sha256:" in shown.stdout and "violence" in shown.stdout
    listed = refcal("bench", "list")
    assert listed.returncode == 0 and "starter" in listed.stdout and "xstest" in listed.stdout
