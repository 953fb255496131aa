"""Alerts: webhook delivery to a real local receiver with retries, the outbox keeping what was not delivered,
permanent refusals recorded, JSON lines appended, and redaction of planted secrets."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

from rich.console import Console

from refcal.watch.alerts import Alert, JsonlSink, Outbox, TerminalSink, WebhookSink
from refcal.watch.control import Breach

SECRET_KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX1234"
EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0199"


def breach(index: int = 31, segment: str = "all") -> Breach:
    return Breach(metric="likely_false_refusal", segment=segment, index=index, rule="p-chart", rate=0.17,
                  baseline=0.05, limit=0.079, onset_index=index, onset="2025-03-01T00:31:00+00:00",
                  detected_at="2025-03-01T00:31:59+00:00")


SAMPLES = [{"request": f"My key is {SECRET_KEY}, write to {EMAIL} or call {PHONE}: how do I kill a python process?",
            "response": "I can't help with that.", "refusal_class": "likely_false", "source": "app.jsonl:12"},
           {"request": "How do I make my cake rise?", "response": "Sorry, I cannot assist.", "source": "app.jsonl:40"}]


class Receiver:
    """A real HTTP server in a thread: answers the first `failures` POSTs with 503 (or `status`), then 200."""

    def __init__(self, failures: int = 0, status: int = 503) -> None:
        self.failures, self.status = failures, status
        self.posts: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                failing = len(receiver.statuses) < receiver.failures
                code = receiver.status if failing else 200
                receiver.statuses.append(code)
                if not failing:
                    receiver.posts.append(body)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0KEN-in-path"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join()


def unreachable_url() -> str:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_a_webhook_that_fails_twice_gets_the_alert_once_with_the_retries_counted(tmp_path):
    with Receiver(failures=2).running() as receiver, Outbox(tmp_path / "r.db") as outbox:
        alert = Alert.from_breach(breach(), SAMPLES)
        assert outbox.put(alert)
        assert outbox.deliver([WebhookSink(receiver.url, tries=5, backoff=0.01)]) == 1
        assert receiver.statuses == [503, 503, 200] and len(receiver.posts) == 1
        assert receiver.posts[0]["alert"]["id"] == alert.id and "likely_false_refusal/all" in receiver.posts[0]["text"]
        assert outbox.status(alert.id) == "delivered"
        (delivery,) = outbox.deliveries(alert.id).values()
        assert delivery["tries"] == 3 and delivery["status"] == "delivered"
        assert outbox.deliver([WebhookSink(receiver.url, tries=5, backoff=0.01)]) == 0  # nothing sent twice
        assert len(receiver.posts) == 1


def test_an_unreachable_webhook_keeps_the_alert_until_a_later_delivery(tmp_path):
    store = tmp_path / "r.db"
    with Outbox(store) as outbox:
        alert = Alert.from_breach(breach(), SAMPLES)
        outbox.put(alert)
        assert outbox.deliver([WebhookSink(unreachable_url(), tries=3, backoff=0.01)]) == 0
        assert outbox.status(alert.id) == "pending"
        (delivery,) = outbox.deliveries(alert.id).values()
        assert delivery["tries"] == 3 and "Connect" in delivery["last_error"]
    with Receiver().running() as receiver, Outbox(store) as reopened:  # a later sweep, a new process
        assert [kept.id for kept in reopened.alerts("pending")] == [alert.id]
        assert reopened.deliver([WebhookSink(receiver.url, tries=2, backoff=0.01)]) == 1
        assert [post["alert"]["id"] for post in receiver.posts] == [alert.id]
        assert reopened.alerts("pending") == [] and reopened.status(alert.id) == "delivered"


def test_a_4xx_is_a_permanent_failure_recorded_and_kept(tmp_path):
    with Receiver(failures=10, status=404).running() as receiver, Outbox(tmp_path / "r.db") as outbox:
        alert = Alert.from_breach(breach())
        outbox.put(alert)
        assert outbox.deliver([WebhookSink(receiver.url, tries=5, backoff=0.01)]) == 0
        assert receiver.statuses == [404]  # not retried
        assert outbox.status(alert.id) == "failed" and [kept.id for kept in outbox.alerts()] == [alert.id]
        (delivery,) = outbox.deliveries(alert.id).values()
        assert delivery == {**delivery, "status": "failed", "tries": 1, "last_error": "HTTP 404"}
        outbox.deliver([WebhookSink(receiver.url, tries=5, backoff=0.01)])
        assert receiver.statuses == [404]


def test_a_sink_that_took_the_alert_is_not_sent_it_again_while_another_fails(tmp_path):
    lines = tmp_path / "alerts.jsonl"
    with Outbox(tmp_path / "r.db") as outbox:
        alert = Alert.from_breach(breach())
        outbox.put(alert)
        down = WebhookSink(unreachable_url(), tries=1, backoff=0)
        assert outbox.deliver([JsonlSink(lines), down]) == 0
        assert outbox.deliver([JsonlSink(lines), down]) == 0
        assert len(lines.read_text().splitlines()) == 1 and outbox.status(alert.id) == "pending"


def test_the_same_breach_is_kept_once(tmp_path):
    with Outbox(tmp_path / "r.db") as outbox:
        assert outbox.put(Alert.from_breach(breach()))
        assert not outbox.put(Alert.from_breach(breach()))  # a replayed window after a restart
        assert outbox.put(Alert.from_breach(breach(index=32)))
        assert len(outbox.alerts("pending")) == 2


def test_jsonl_sink_appends_one_line_per_alert(tmp_path):
    lines = tmp_path / "out" / "alerts.jsonl"
    with Outbox(tmp_path / "r.db") as outbox:
        for index in (31, 45):
            outbox.put(Alert.from_breach(breach(index), SAMPLES))
        assert outbox.deliver([JsonlSink(lines)]) == 2
    written = [Alert.model_validate_json(line) for line in lines.read_text().splitlines()]
    assert [alert.breach.index for alert in written] == [31, 45]


def test_samples_are_redacted_unless_text_is_kept(tmp_path):
    alert = Alert.from_breach(breach(), SAMPLES)
    text = alert.model_dump_json()
    for planted in (SECRET_KEY, EMAIL, "555 0199"):
        assert planted not in text
    assert "[secret]" in alert.samples[0].request and "[email]" in alert.samples[0].request
    assert "kill a python process" in alert.samples[0].request and alert.redacted
    lines = tmp_path / "alerts.jsonl"
    with Outbox(tmp_path / "r.db") as outbox:
        outbox.put(alert)
        outbox.deliver([JsonlSink(lines)])
    assert SECRET_KEY not in lines.read_text() and SECRET_KEY not in (tmp_path / "r.db").read_bytes().decode("latin-1")
    kept = Alert.from_breach(breach(), SAMPLES, keep_text=True)
    assert SECRET_KEY in kept.samples[0].request and not kept.redacted


def test_samples_are_capped(tmp_path):
    many = [{"request": f"question {number}", "response": "no"} for number in range(20)]
    assert len(Alert.from_breach(breach(), many, max_samples=3).samples) == 3


def test_the_webhook_url_is_never_stored(tmp_path):
    with Outbox(tmp_path / "r.db") as outbox:
        outbox.put(Alert.from_breach(breach()))
        sink = WebhookSink("http://127.0.0.1:9/hooks/T0KEN-in-path?key=abc", tries=1, backoff=0)
        outbox.deliver([sink])
        assert "T0KEN" not in sink.name and "abc" not in sink.name
    assert b"T0KEN" not in (tmp_path / "r.db").read_bytes()


def test_terminal_sink_prints_the_breach_and_escapes_markup():
    buffer = StringIO()
    alert = Alert.from_breach(breach(segment="[red]route[/red]"),
                              [{"request": "[b]bold?[/b]", "response": "I can't.", "source": "a.jsonl:3"}])
    result = TerminalSink(Console(file=buffer, width=200)).send(alert)
    printed = buffer.getvalue()
    assert result.delivered and "ALERT" in printed and "[red]route[/red]" in printed and "[b]bold?[/b]" in printed
    assert "17.0%" in printed and "a.jsonl:3" in printed
