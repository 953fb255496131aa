"""Every data file the package reads at run time is declared as package data (an editable install hides
a missing one; a wheel would ship without it)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_data_file_under_src_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["refcal"]
    package = ROOT / "src" / "refcal"
    data = [path.relative_to(package).as_posix() for path in package.rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts]
    assert data, "no data files found: the test would prove nothing"
    missing = [name for name in data if not any(fnmatch(name, pattern) for pattern in patterns)]
    assert missing == []
