"""Planted secrets and personal data never survive redaction; ordinary text does."""

from __future__ import annotations

import pytest

from refcal.redact import redact

PLANTED = [
    "my key is sk-proj-AbCdEfGhIjKlMnOpQrStUvWx1234",
    "Authorization: Bearer abcdefghijklmnop123456",
    "api_key=AKIAIOSFODNN7EXAMPLE",
    '{"password": "hunter2hunter2"}',
    "token hf_AbCdEfGhIjKlMnOpQrStUvWxYz",
    "aws AKIAIOSFODNN7EXAMPLE here",
    "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123",
    "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]
SECRET_PARTS = ["AbCdEfGhIjKlMnOp", "abcdefghijklmnop123456", "AKIAIOSFODNN7EXAMPLE", "hunter2hunter2",
                "dozjgNryP4J3jVmNHl0w5N"]


@pytest.mark.parametrize("text", PLANTED)
def test_planted_secrets_are_gone(text):
    cleaned = redact(text)
    assert "[secret]" in cleaned
    assert not any(part in cleaned for part in SECRET_PARTS)


def test_email_and_phone_are_replaced_and_the_rest_kept():
    cleaned = redact("Write to jane.doe+x@example.co.uk or call +44 20 7946 0958 about how to kill a process.")
    assert "jane.doe" not in cleaned and "7946" not in cleaned
    assert "[email]" in cleaned and "[phone]" in cleaned
    assert cleaned.endswith("about how to kill a process.")


def test_ordinary_text_is_unchanged():
    text = "How do I kill a Python process on port 8080? The token bucket algorithm is neat."
    assert redact(text) == text
