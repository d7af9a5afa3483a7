"""How hadpo fails: the error kinds the command line turns into one line and an exit code, and the redaction of
secrets from every message and log line.

Exit codes (docs/errors.md holds the catalogue of bad inputs, each with its exact message and a test):
  0  the run produced what it was asked for;
  1  the run stopped or produced nothing (`RunFailed`): no pairs left, a non-finite loss, an endpoint that refuses
     the key; what was written before is kept and a rerun resumes from it;
  2  bad input, found before the expensive work: a file, line, record, field or option that cannot work
     (`RecordError`, `ConfigError`, any `ValueError`, a path that cannot be read or written); argparse's usage
     errors use 2 as well;
  130 interrupted (Ctrl-C).
Every error is one line, "hadpo: error: FILE:LINE: field: problem" (as much of that as applies).

Secrets: an API key read from the environment is registered here (`register_secret`) when a client is made;
`redact` removes it, whole or in part (8 of its characters in a row), from a text, and `RedactingFilter` does
so for every log record, so that an endpoint echoing the key into an error message never puts it in a file, a
log or the terminal.
"""

from __future__ import annotations

import logging
import re
import threading

SECRET_WINDOW = 8  # this many characters of a key in a row count as the key
REDACTED = "[redacted]"

_secrets: set[str] = set()
_lock = threading.Lock()


class RunFailed(RuntimeError):
    """The run stopped, or finished without producing what it was asked for (exit 1); the message says why and
    what was kept."""


def register_secret(value: str | None) -> None:
    """Redact `value` from every message from now on."""
    if value:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by [redacted], and every run of non-blank characters that holds
    8 characters of one in a row (a key quoted in part, "sk-abc...xyz"). A secret shorter than that is replaced
    where it stands as a word of its own."""
    if not _secrets or not text:
        return text
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    windows = set()
    for secret in secrets:
        if len(secret) < SECRET_WINDOW:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", REDACTED, text)
            continue
        text = text.replace(secret, REDACTED)
        windows |= {secret[i : i + SECRET_WINDOW] for i in range(len(secret) - SECRET_WINDOW + 1)}
    if windows:
        text = re.sub(r"\S+", lambda m: REDACTED if any(w in m.group(0) for w in windows) else m.group(0), text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts registered secrets from a log record's message (installed on the command line's log handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


def one_line(text: str) -> str:
    """A message on one line: line breaks of a library's message (pydantic, transformers) become spaces."""
    return " ".join(str(text).split())


def os_error_line(error: OSError) -> str:
    """ "PATH: what is wrong" for an OSError that names its file, its own text otherwise."""
    if error.filename is None or not error.strerror:
        return str(error)
    where = f"{error.filename} -> {error.filename2}" if error.filename2 else str(error.filename)
    return f"{where}: {error.strerror[0].lower()}{error.strerror[1:]}"
