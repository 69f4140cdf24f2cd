"""Storage URLs: the default, the environment override, and display without passwords.

kmlp stores studies in any SQLAlchemy URL Optuna accepts. SQLite (the default,
``sqlite:///kmlp.db`` in the working folder) suits one machine; PostgreSQL suits
workers on several machines. A plain ``postgresql://`` URL means psycopg 3 (SQLAlchemy
2.1's default driver, a kmlp dependency), so the same URL works in kmlp, Optuna's CLI,
``optuna.load_study`` and optuna-dashboard; ``postgresql+psycopg2://`` works where
psycopg2 is installed.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

import sqlalchemy.engine
import sqlalchemy.exc

from kmlp.storage.errors import StorageError

DEFAULT_URL = "sqlite:///kmlp.db"
ENV_VAR = "KMLP_STORAGE"

# Seconds a SQLite connection waits for a lock before "database is locked"; several
# workers and a dashboard share one file, and a commit can wait behind another's.
SQLITE_BUSY_TIMEOUT_S = 60.0
# Seconds to wait for a PostgreSQL/MySQL server before calling it unreachable.
CONNECT_TIMEOUT_S = 10


def resolve_url(url: str | None = None) -> str:
    """The storage URL to use: ``url`` if given, else ``$KMLP_STORAGE``, else the default."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


# scheme://user:password@ -- the user runs to the first ":" (as in SQLAlchemy), the
# password to the LAST "@" (greedy): a password holding an unescaped "@", which SQLAlchemy
# would split into the host, is masked whole; a later "@" in the path or query only masks
# more than needed, never less. Any scheme SQLAlchemy might accept ("post_gres://").
_USERINFO = re.compile(r"^(?P<scheme>\s*[^:/@\s]*://)(?P<user>[^:/]*):(?P<password>.*)@", re.DOTALL)
# Without "://" the text is no URL; "user:password@host" is still masked the same way.
_LOOSE_USERINFO = re.compile(r"^(?P<scheme>)(?P<user>[^:/]*):(?P<password>.*)@", re.DOTALL)
# password=... in a query string (libpq reads it there too) or a keyword DSN.
_KEYWORD_SECRET = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token)\s*=\s*)"
    r"(?P<value>'[^']*'?|\"[^\"]*\"?|[^&;\s]+)"
)
_SECRET_KEYS = ("password", "passwd", "pwd", "secret", "token")
_MAX_SHOWN = 300  # characters of a URL shown in a message


def display_url(url: object) -> str:
    """``url`` for people: any password masked as ``***``, one line, of bounded length.

    Works on the text itself, so also on URLs SQLAlchemy cannot parse (a malformed port,
    an unescaped "@" in the password): the userinfo's password and ``password=`` style
    parameters are masked; everything else is shown as given. Use it in every message,
    log line and file that shows a storage URL.
    """
    if isinstance(url, sqlalchemy.engine.URL):
        url = url.render_as_string(hide_password=False)
    text = url if isinstance(url, str) else str(url)
    text = _userinfo(text).sub(lambda m: f"{m['scheme']}{m['user']}:***@", text, count=1)
    text = _KEYWORD_SECRET.sub(lambda m: f"{m['key']}***", text)
    # One line: control characters (a newline in the URL) shown escaped.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > _MAX_SHOWN:
        text = f"{text[: _MAX_SHOWN - 40]}... ({len(text)} characters)"
    return text


def without_password(url: str) -> str:
    """``url`` with any password taken out of its text (``user:pw@`` -> ``user@``,
    ``password=pw`` dropped): for a command people copy when the URL cannot be parsed
    (``portable_url`` does it for URLs that can)."""
    text = _userinfo(url).sub(lambda m: f"{m['scheme']}{m['user']}@", url, count=1)
    text = re.sub(r"(?i)[?&;]?\b(?:password|passwd|pwd)\s*=[^&;\s]*", "", text)
    return text


def _userinfo(text: str) -> re.Pattern[str]:
    return _USERINFO if "://" in text else _LOOSE_USERINFO


def _secrets(url: str) -> list[str]:
    """The secret substrings of ``url``, as written and percent-decoded."""
    found = []
    match = _userinfo(url).match(url)
    if match:
        found.append(match["password"])
    found += [m["value"] for m in _KEYWORD_SECRET.finditer(url)]
    decoded = [urllib.parse.unquote(s) for s in found]
    return sorted({s for s in found + decoded if s}, key=len, reverse=True)


# A URL inside free text (an error message): scheme://, then up to a space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact(text: str, *, url: str | None = None) -> str:
    """``text`` (e.g. an error message about ``url``) with ``url``'s secrets replaced by
    ``***`` wherever they appear (as a whole: "pw" in "kmlp pwd" is left, so that a short
    password does not garble the text), and any URL in it masked as ``display_url`` masks
    one."""
    for secret in _secrets(url) if isinstance(url, str) else []:
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    text = _URL_IN_TEXT.sub(
        lambda m: _userinfo(m[0]).sub(lambda u: f"{u['scheme']}{u['user']}:***@", m[0], count=1),
        text,
    )
    return _KEYWORD_SECRET.sub(lambda m: f"{m['key']}***", text)


def parse_url(url: str) -> sqlalchemy.engine.URL:
    """Parse ``url``; StorageError (one line, no password) if it is malformed."""
    if not isinstance(url, str):
        raise StorageError(f"a storage URL must be text, not {type(url).__name__}")
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError, TypeError) as exc:
        reason = redact(" ".join(str(exc).split()), url=url) or type(exc).__name__
        raise StorageError(f"malformed storage URL {display_url(url)}: {reason}") from None
    if parsed.host and "@" in parsed.host:
        raise StorageError(
            f"malformed storage URL {display_url(url)}: more than one '@' before the host; "
            "write an '@' in the user name or password as %40"
        )
    return parsed


def backend(url: str) -> str:
    """The database backend of ``url``: 'sqlite', 'postgresql', 'mysql', ..."""
    return parse_url(url).get_backend_name()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, absolute; None for in-memory or other backends."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def portable_url(url: str) -> str:
    """``url`` made independent of the working folder and free of passwords.

    SQLite paths become absolute; a password is dropped (the reader supplies it
    through the URL again or ``~/.pgpass``). Used in export files.
    """
    parsed = parse_url(url)
    path = sqlite_path(url)
    if path is not None:
        parsed = parsed.set(database=str(path))
    if parsed.password is not None:
        parsed = parsed._replace(password=None)  # URL.set() treats None as "unchanged"
    secret_keys = [k for k in parsed.query if k.lower() in _SECRET_KEYS]
    if secret_keys:  # ?password=... (libpq reads it there too)
        parsed = parsed.difference_update_query(secret_keys)
    return parsed.render_as_string(hide_password=False)


def has_secret(url: str) -> bool:
    """True if the text of ``url`` holds a password (userinfo or ``password=``)."""
    return bool(_secrets(url))


def engine_kwargs(url: str) -> dict:
    """SQLAlchemy ``create_engine`` keyword arguments suited to the backend of ``url``."""
    name = backend(url)
    if name == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if name == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if name == "mysql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}
