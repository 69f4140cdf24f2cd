"""Hostile storage input: URLs are shown without their passwords, malformed ones are one
line without them, and crafted export files are refused in one StorageError line.

The properties run with Hypothesis (derandomized, so CI sees the same examples each run).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kmlp.errors import KmlpError
from kmlp.network import TrainConfig
from kmlp.network.errors import ConfigError
from kmlp.storage import StorageError, read_export, write_export
from kmlp.storage.exportfile import MAX_EXPORT_BYTES
from kmlp.storage.urls import backend, display_url, parse_url, portable_url, redact, sqlite_path

PROPERTY = settings(max_examples=300, deadline=None, database=None, derandomize=True)

# ---------------------------------------------------------------- storage URLs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://postgres:S3cretPW@127.0.0.1:notaport/test",
            "postgresql://postgres:***@127.0.0.1:notaport/test",
        ),
        ("postgresql://u:S3cretPW@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:p@S3cretPW@host/db", "postgresql://u:***@host/db"),  # unescaped @
        ("postgresql://u:S3cret%40PW@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:S3cret/PW?x@host/db", "postgresql://u:***@host/db"),
        ("postgresql://a@b:S3cretPW@host/db", "postgresql://a@b:***@host/db"),
        ("post_gres://u:S3cretPW@h/d", "post_gres://u:***@h/d"),
        (
            "postgresql://h/db?password=S3cretPW&sslmode=off",
            "postgresql://h/db?password=***&sslmode=off",
        ),
        ("host=h password='S3cret PW' user=u", "host=h password=*** user=u"),
        ("u:S3cretPW@host", "u:***@host"),
        ("postgresql://u:S3cretPW\n@h/d", "postgresql://u:***@h/d"),
        ("postgresql://user@host:5432/db", "postgresql://user@host:5432/db"),
        ("sqlite:///kmlp.db", "sqlite:///kmlp.db"),
        ("sqlite:////tmp/a@b:c.db", "sqlite:////tmp/a@b:c.db"),
    ],
)
def test_display_masks_the_password_even_when_the_url_cannot_be_parsed(url, shown):
    assert display_url(url) == shown
    assert "S3cret" not in display_url(url)


def test_display_is_one_bounded_line():
    shown = display_url("postgresql://u:pw@h/" + "d" * 10_000 + "\r\nx")
    assert "\n" not in shown and "\r" not in shown and len(shown) < 320
    assert display_url(None) == "None" and display_url(b"x") == "b'x'"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:S3cretPW@127.0.0.1:notaport/test",
        "postgresql://postgres:S3cretPW@[::1/test",
        "postgresql://u:p@S3cretPW@host/db",
        "::S3cretPW@",
    ],
)
def test_malformed_urls_are_one_line_without_the_password(url):
    with pytest.raises(StorageError, match="malformed storage URL") as err:
        parse_url(url)
    message = str(err.value)
    assert "S3cretPW" not in message and "\n" not in message
    for reader in (backend, sqlite_path, portable_url):
        with pytest.raises(StorageError) as err:
            reader(url)
        assert "S3cretPW" not in str(err.value)


def test_parse_url_refuses_what_is_not_text():
    for value in (None, 5, b"sqlite://"):
        with pytest.raises(StorageError, match="must be text"):
            parse_url(value)  # type: ignore[arg-type]


def test_redact_removes_the_password_in_every_spelling():
    url = "postgresql://u:S3cret%40PW@h/d?password=Tok3n"
    text = "failed for S3cret@PW, S3cret%40PW and Tok3n; password=Tok3n"
    assert redact(text, url=url) == "failed for ***, *** and ***; password=***"


_SCHEMES = st.sampled_from(
    ["postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql+pymysql", "sqlite", "x_y"]
)
_TEXT = st.characters(exclude_categories=("Cs",))
_USERS = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=":/@"), max_size=10)
_PASSWORDS = st.text(_TEXT, min_size=3, max_size=24)
_HOSTS = st.sampled_from(["127.0.0.1", "db.example", "[::1]", "h"]) | st.text(_TEXT, max_size=12)
_PORTS = st.none() | st.integers(0, 70000).map(str) | st.text(_TEXT, max_size=5)
_DATABASES = st.text(_TEXT, max_size=12)
_QUERIES = st.none() | st.text(_TEXT, max_size=20)


@st.composite
def urls_with_password(draw) -> tuple[str, str, str]:
    """(url, its password, the same url with a neutral password)."""
    parts = {
        "scheme": draw(_SCHEMES),
        "user": draw(_USERS),
        "host": draw(_HOSTS),
        "port": draw(_PORTS),
        "database": draw(_DATABASES),
        "query": draw(_QUERIES),
    }
    password = draw(_PASSWORDS)

    def build(secret: str) -> str:
        port = "" if parts["port"] is None else f":{parts['port']}"
        query = "" if parts["query"] is None else f"?{parts['query']}"
        return (
            f"{parts['scheme']}://{parts['user']}:{secret}@{parts['host']}{port}"
            f"/{parts['database']}{query}"
        )

    return build(password), password, build("pw")


def _pieces(password: str) -> list[str]:
    """The password and its parts between "@"s: an unescaped "@" must not leak the rest
    (SQLAlchemy's own rendering shows "u:***@rest@host" for the password "p@rest")."""
    return [password, *(p for p in password.split("@") if len(p) >= 3)]


def _outside(password: str, neutral: str, *texts: str) -> None:
    """Skip examples where the password's text is part of the URL's other parts anyway."""
    for piece in _pieces(password):
        assume(piece not in display_url(neutral) and piece not in "***")
        for text in texts:
            assume(piece not in text)


@PROPERTY
@given(urls_with_password())
def test_display_never_contains_the_password(case):
    url, password, neutral = case
    _outside(password, neutral)
    shown = display_url(url)
    assert not [piece for piece in _pieces(password) if piece in shown]


@PROPERTY
@given(urls_with_password())
def test_parse_errors_and_portable_urls_never_contain_the_password(case):
    url, password, neutral = case
    _outside(password, neutral)
    try:
        parse_url(url)
    except StorageError as exc:
        assert not [p for p in _pieces(password) if p in str(exc)] and "\n" not in str(exc)
        return
    try:
        portable = portable_url(url)
    except StorageError as exc:
        assert not [p for p in _pieces(password) if p in str(exc)]
        return
    try:
        neutral_portable = portable_url(neutral)
    except StorageError:
        return
    _outside(password, neutral, neutral_portable)
    assert not [piece for piece in _pieces(password) if piece in portable]


# ---------------------------------------------------------------- export files

VALID = {
    "study": "s",
    "storage": "sqlite:////tmp/k.db",
    "trial": 3,
    "stage": 1,
    "lambda": 0.001,
    "log10_lambda": -3.0,
    "lambda_interval": [0.0005, 0.002],
    "val_accuracy": 0.5,
    "train_accuracy": 0.6,
    "blas_threads": 1,
    "config": TrainConfig(hidden=(10,)).to_dict(),
    "data": {"fingerprint": "ab", "n_train": 1000, "n_val": 500},
    "search": {},
    "stages": [],
    "versions": {"kmlp": "0.1.0"},
    "exported_at": "2024-01-01T00:00:00Z",
}


def _write_text(folder: Path, text: str) -> Path:
    path = folder / "export.json"
    path.write_text(text, encoding="utf-8")
    return path


def _nested(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def _document(**fields) -> str:
    return json.dumps({"format": "kmlp-export", "format_version": 1, **VALID, **fields})


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (_document(data=[1]), '"data" must be an object, not a list'),
        (_document(data="x"), '"data" must be an object'),
        (_document(config="55"), '"config" must be an object'),
        (_document(trial=1.5), '"trial" must be a whole number'),
        (_document(trial=True), '"trial" must be a whole number >= 0, not true'),
        (_document(val_accuracy=1.5), '"val_accuracy" must be a number in'),
        (_document(blas_threads=0), '"blas_threads" must be a whole number >= 1'),
        (_document(storage=["x"]), '"storage" must be a string'),
        (_document(data={"n_train": 2.5}), '"data.n_train" must be a whole number'),
        (_document(study=""), '"study" must be a study name'),
        (_document(study="a\nb"), '"study" must be a study name'),
        (_document(trial=10**4000), "a 4001-digit number is too large"),
        (_document().replace('"trial": 3', '"trial": ' + "9" * 5000), "number too long"),
        (_document().replace('"lambda": 0.001', '"lambda": 1e999'), "inf is not a finite"),
        (_document().replace('"lambda": 0.001', '"lambda": NaN'), "NaN is not a number"),
        (_document(stages=_nested(40)), "nested more than 32 levels"),
        (_document(lambda_interval=[0.002, 0.01]), '"lambda_interval" [0.002, 0.01] must contain'),
        (_document(lambda_interval=[0.002, 0.0005]), '"lambda_interval" must be a list'),
        (_document(lambda_interval=[0, 0.002]), "with 0 < low <= high, not a list"),
        (_document(lambda_interval=[0.0005]), '"lambda_interval" must be a list'),
        (_document(lambda_interval="0.001"), '"lambda_interval" must be a list'),
        (_document().replace("0.0005, 0.002", "0.0005, Infinity"), "Infinity is not a number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_crafted_exports_are_one_storage_error(tmp_path, text, complaint):
    path = _write_text(tmp_path, text)
    with pytest.raises(StorageError) as err:
        read_export(path)
    message = str(err.value)
    assert complaint in message and str(path) in message and "\n" not in message


def test_a_huge_or_endless_export_is_not_read_whole(tmp_path):
    path = _write_text(tmp_path, " " * (MAX_EXPORT_BYTES + 1))
    with pytest.raises(StorageError, match="too big"):
        read_export(path)
    with pytest.raises(StorageError, match="too big"):
        read_export("/dev/zero")


def test_a_valid_export_round_trips(tmp_path):
    content = dict(VALID)
    path = write_export(tmp_path / "best.json", content)
    assert {k: read_export(path)[k] for k in content} == content


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_TEXT, max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def export_like_documents(draw) -> str:
    """JSON text: an export with some fields replaced, dropped or added, or any JSON."""
    if draw(st.booleans()):
        return json.dumps(draw(_JSON))
    document = {"format": "kmlp-export", "format_version": 1, **VALID}
    keys = sorted(document)
    for key in draw(st.lists(st.sampled_from(keys), max_size=4)):
        action = draw(st.sampled_from(["replace", "drop", "nest"]))
        if action == "replace":
            document[key] = draw(_JSON)
        elif action == "drop":
            document.pop(key, None)
        elif isinstance(document.get(key), dict):
            inner_keys = sorted(document[key]) or ["x"]
            document[key] = {**document[key], draw(st.sampled_from(inner_keys)): draw(_JSON)}
    return json.dumps(document)


def _check_like_retrain(text: str) -> None:
    """What kmlp retrain does with an export before training: read it, then build its
    configuration. Only one-line kmlp errors may come out."""
    with tempfile.TemporaryDirectory() as folder:
        path = _write_text(Path(folder), text)
        try:
            document = read_export(path)
        except StorageError as exc:
            assert "\n" not in str(exc)
            return
    # loaded: the fields readers rely on have their types
    assert isinstance(document["data"], dict) and isinstance(document["config"], dict)
    assert isinstance(document["study"], str) and type(document["trial"]) is int
    assert 0 <= document["val_accuracy"] <= 1 and document["lambda"] > 0
    assert document.get("storage") is None or isinstance(document["storage"], str)
    try:
        TrainConfig.from_dict(document["config"])
    except ConfigError as exc:
        assert isinstance(exc, KmlpError) and "\n" not in str(exc)


@PROPERTY
@given(export_like_documents())
def test_any_json_document_loads_as_an_export_or_is_one_kmlp_error(text):
    _check_like_retrain(text)


@PROPERTY
@given(st.text(_TEXT, max_size=200))
def test_any_text_is_an_export_or_one_storage_error(text):
    _check_like_retrain(text)


@pytest.mark.parametrize(
    "url, portable, bare",
    [
        ("postgresql://u:pw@h/db", "postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u@h/db?password=pw", "postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://u:pw@h/db?sslmode=require&PASSWORD=pw",
            "postgresql://u@h/db?sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        ("postgresql://u:pw@h:bad/db", None, "postgresql://u@h:bad/db"),  # malformed
    ],
)
def test_printed_commands_drop_every_password(url, portable, bare):
    from kmlp.storage.urls import has_secret, without_password

    assert has_secret(url)
    assert without_password(url) == bare
    if portable is None:
        with pytest.raises(StorageError):
            portable_url(url)
    else:
        assert portable_url(url) == portable and not has_secret(portable)


def test_redact_replaces_a_short_password_only_as_a_whole():
    assert redact("kmlp: p@h said p", url="postgresql://u:p@h/db") == "kmlp: ***@h said ***"


@PROPERTY
@given(urls_with_password())
def test_error_lines_never_show_the_password(case):
    from kmlp.cli.main import error_text

    url, password, neutral = case
    _outside(password, neutral, "failed: (", ")")
    for argv in (["--storage", url], [f"--storage={url}"], [f"--st={url}"]):
        line = error_text(f"failed: {url} ({password})\nnext line", argv)
        assert not [piece for piece in _pieces(password) if piece in line], line
        assert "\n" not in line
