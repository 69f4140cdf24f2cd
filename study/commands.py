"""Shell commands that act on a study, as kmlp prints them for people to copy.

Every argument is quoted with ``shlex.quote``; the storage URL is the portable one
(absolute SQLite path, no password: PostgreSQL takes it from ``~/.pgpass`` or the user
adds it back), so a printed command never shows a secret.
"""

from __future__ import annotations

import shlex

from kmlp.storage import StorageError, portable_url
from kmlp.storage.urls import has_secret, without_password


def kmlp_command(*args: str) -> str:
    """``kmlp ARG ...`` with each argument shell-quoted."""
    return " ".join(["kmlp", *(shlex.quote(a) for a in args)])


def storage_args(storage_url: str | None) -> list[str]:
    """``["--storage", URL]`` with the portable URL, or nothing for None."""
    return ["--storage", portable_url(storage_url)] if storage_url else []


def export_command(study_name: str, storage_url: str | None, output: str = "best.json") -> str:
    """``kmlp export --study NAME --storage URL -o best.json``."""
    return kmlp_command("export", "--study", study_name, *storage_args(storage_url), "-o", output)


def dashboard_command(storage_url: str | None, artifacts: str | None = None) -> str:
    """``kmlp dashboard --storage URL [--artifacts PLACE]``."""
    extra = ["--artifacts", artifacts] if artifacts else []
    return kmlp_command("dashboard", *storage_args(storage_url), *extra)


def report_command(
    study_name: str, storage_url: str | None, artifacts: str | None = None, out: str | None = None
) -> str:
    """``kmlp report --study NAME --storage URL --out report-NAME``."""
    extra = ["--artifacts", artifacts] if artifacts else []
    folder = out or f"report-{study_name}"
    return kmlp_command(
        "report", "--study", study_name, *storage_args(storage_url), *extra, "--out", folder
    )


def next_commands(
    study_name: str, storage_url: str | None, artifacts: str | None = None
) -> list[str]:
    """What to run after a launch: browse it, export the best λ, write a report."""
    return [
        dashboard_command(storage_url, artifacts),
        export_command(study_name, storage_url),
        report_command(study_name, storage_url, artifacts),
    ]


def has_password(storage_url: str | None) -> bool:
    """True if the URL carries a password (which printed commands leave out)."""
    return bool(storage_url) and has_secret(storage_url or "")


def resume_command(argv: list[str]) -> str:
    """The command line ``argv`` as a copyable ``kmlp ...`` command (the resume hint after
    an interrupt), storage password left out."""
    out = []
    take_url = False
    for arg in argv:
        if take_url:
            out.append(_no_password(arg))
            take_url = False
            continue
        option, eq, value = arg.partition("=")
        is_storage = option.startswith("--st") and "--storage".startswith(option)
        if is_storage and eq:
            out.append(f"{option}={_no_password(value)}")
        else:
            out.append(arg)
            take_url = is_storage
    return kmlp_command(*out)


def _no_password(url: str) -> str:
    try:
        return portable_url(url) if has_password(url) else url
    except StorageError:  # malformed: take the password out of the text itself
        return without_password(url)
