"""`python -m refcal.cli`: the same as the `refcal` command."""

import os

from refcal.cli.main import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
main()
