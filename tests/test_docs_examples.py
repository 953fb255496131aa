"""Every ```python block in docs/*.md runs, each in a fresh temporary directory and a fresh interpreter.

A block preceded by `<!-- test: model -->` talks to the embedded SmolLM2 and carries the `model` marker;
`<!-- test: skip -->` leaves a block out. A failure names the page and the block's number on it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DIRECTIVE = re.compile(r"<!--\s*test:\s*(?P<what>[\w-]+)\s*-->\s*\Z")
TIMEOUT_S = 300


def blocks() -> list[tuple[str, int, str, str | None]]:
    """(page, number on the page from 1, code, directive) of every python block."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(FENCE.finditer(text), 1):
            directive = DIRECTIVE.search(text[: match.start()].rstrip())
            found.append((page.name, number, match["code"], directive["what"] if directive else None))
    return found


def _params() -> list[object]:
    params = []
    for page, number, code, directive in blocks():
        marks = [pytest.mark.model] if directive == "model" else []
        if directive == "skip":
            marks.append(pytest.mark.skip(reason="marked <!-- test: skip --> in the page"))
        params.append(pytest.param(page, number, code, marks=marks, id=f"{page}#{number}"))
    return params


WITHOUT_EXAMPLES = {"index.md", "install.md", "cli.md"}
"""Pages with no python example: the home page, installation, and the generated CLI reference."""


def test_every_page_has_an_example() -> None:
    pages = {page for page, _, _, _ in blocks()}
    missing = sorted(page.name for page in DOCS.glob("*.md") if page.name not in pages | WITHOUT_EXAMPLES)
    assert not missing, f"docs pages without a ```python example: {missing}"


def test_directives_are_read() -> None:
    assert DIRECTIVE.search("text\n<!-- test: model -->") is not None
    assert DIRECTIVE.search("<!-- test: model -->\nmore text") is None


@pytest.mark.parametrize(("page", "number", "code"), _params())
def test_docs_example_runs(page: str, number: int, code: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("REFCAL_STORE", None)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                                env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"docs/{page}, python block {number}: still running after {TIMEOUT_S} s")
    if result.returncode != 0:
        pytest.fail(f"docs/{page}, python block {number} exited {result.returncode}:\n{result.stderr[-4000:]}",
                    pytrace=False)
