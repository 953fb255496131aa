"""Every error refcal raises on purpose.

RefcalError
 ├── InputFileError  an input file is malformed (names the file, line and field)
 │    ├── BenchError  ... a bench file
 │    └── StoreFileError  ... a run database file (not SQLite, truncated, a directory, a damaged row)
 ├── TargetSpecError a target spec cannot be parsed or its parts are missing
 ├── TargetError     a target failed to answer
 │    ├── TransientTargetError    worth retrying (5xx, reset, timeout, malformed body)
 │    ├── RateLimitedTargetError  HTTP 429, with the server's Retry-After when it gave one
 │    └── FatalTargetError        not worth retrying (4xx, unreachable at start-up, bad key)
 ├── StoreError      the run database refuses an operation (unknown run, mismatched resume)
 └── MissingExtraError  an optional dependency is not installed (with the install hint)

User mistakes print as one clear line from the CLI; anything else keeps its traceback.
"""

from __future__ import annotations


class RefcalError(Exception):
    """Base of every error refcal raises on purpose."""


class InputFileError(RefcalError):
    """An input file cannot be read; says where (file, line, field) and why."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = ":".join(str(part) for part in (path, line) if part is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field '{field}')" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")


class BenchError(InputFileError):
    """A bench cannot be loaded."""


class StoreFileError(InputFileError):
    """A run database file cannot be used: not a file, not SQLite, truncated, or holding a row refcal cannot read.

    Not a StoreError on purpose: code that catches StoreError to mean "no such run" must not take a damaged
    database for a missing run."""


class TargetSpecError(RefcalError):
    """A target spec such as `openai:MODEL@URL` is malformed."""


class TargetError(RefcalError):
    """A target did not produce a response."""


class TransientTargetError(TargetError):
    """A failure that may pass on retry."""


class RateLimitedTargetError(TransientTargetError):
    """HTTP 429; `retry_after` holds the server's wish in seconds, if it stated one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalTargetError(TargetError):
    """A failure that retrying cannot fix."""


class StoreError(RefcalError):
    """The run database cannot do what was asked."""


class MissingExtraError(RefcalError):
    """An optional dependency is missing; the message says what to install."""


class MutatorError(RefcalError):
    """An unknown mutator or family, a count or depth out of range, or an item a mutator cannot handle;
    raised while planning, before any request."""
