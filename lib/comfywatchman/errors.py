"""Exceptions that carry a one-line, user-facing message and the exit code they map to."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 75  # EX_TEMPFAIL: the gate skipped this cycle; not an error.


class WatchmanError(Exception):
    """A failure with a message fit to show a user as is (no traceback)."""

    exit_code = EXIT_FAILED


class ConfigError(WatchmanError):
    """The configuration is invalid. ``messages`` holds every problem found, one line each."""

    exit_code = EXIT_USAGE

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class ArtifactError(WatchmanError):
    """An artifact (state or output JSON file) is missing, torn or does not match its schema."""


class LockHeldError(WatchmanError):
    """Another cycle holds the lock."""

    exit_code = EXIT_SKIPPED

    def __init__(self, lock_path: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"{lock_path}: another cycle is running ({holder} holds the lock); skipping")
        self.pid = pid


class LockUnusableError(WatchmanError):
    """The lock file cannot be opened at all (a folder, or a file this user may not open, in its place)."""

    def __init__(self, lock_path: str, reason: str) -> None:
        super().__init__(f"{lock_path}: cannot open the lock file ({reason}); remove or fix it")


def in_words(exc: BaseException) -> str:
    """Return an error as one line for a person: an OSError's file and its own words ("/x/intake.json: No space
    left on device"), without the errno and quotes of its str(); anything else as its text."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)
