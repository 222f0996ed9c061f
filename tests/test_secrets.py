"""Password redaction of storage URLs (no password in any output, file or process list), malformed URLs included.

A mistyped URL is not a URL to any parser, but its password is still a password: every case of the table must
lose its secret in :func:`redact_url`, in :func:`redact_text` of a message or a traceback (with and without
the URL at hand), and in the one-line errors of ``deeplimit sweep create/status``.
"""

from __future__ import annotations

import traceback

import pytest

from deeplimit.cli.sweep import main
from deeplimit.secrets import STORAGE_ENV, redact_text, redact_url

PW = "S3cretPW"

# (url, the secrets that must never show, whether the shape alone gives it away without the URL at hand)
MALFORMED = [
    ("postgresql+psycopg2://u:S3cretPW@127.0.0.1:5432/db", [PW], True),
    ("postgresql:/bob:S3cretPW@db/s", [PW], True),  # one slash
    ("postgresql:bob:S3cretPW@db/s", [PW], True),  # no slash at all
    ("bob:S3cretPW@db/s", [PW], True),  # no scheme
    ("postgresql://u:p@ss@w0rd@host/db", ["p@ss@w0rd", "ss@w0rd"], True),  # raw @ in the password
    ("postgresql://bob:S3cret/PW@db/s", ["S3cret/PW", "S3cret"], True),  # raw / in the password
    ("postgresql://u:a%40S3cretPW@host:5/db?connect_timeout=3", ["a%40S3cretPW", "a@S3cretPW"], True),
    ("postgresql://u@host/db?password=S3cretPW&sslmode=require", [PW], True),
    ("postgresql:/db/s?user=bob&PASSWORD=S3cretPW", [PW], True),  # query password in a malformed URL
    ("postgresql://u@h/db?sslpassword=S3cretPW", [PW], True),
    ("postgresql://:S3cretPW@db/s", [PW], True),  # a password without a user
    ("postgresql://bob:S3cretPW@[::1]:5432/s", [PW], True),  # IPv6 host
    ("postgresql://bob:S3cretPW@[fe80::1%25eth0]/s", [PW], True),
    ("  postgresql://bob:S3cretPW@db/s\n", [PW], True),  # surrounding whitespace
    ("postgresql://bob:S3cret PW@db/s", ["S3cret PW", "S3cret"], False),  # a space inside the password
    ("postgresql://bob:S3cretPW@db/s?options=a@b", [PW], True),  # @ in the query
    ("host=db user=bob password=S3cretPW dbname=s", [PW], True),  # libpq keyword DSN
    ("mysql://bob:S3cretPW@db", [PW], True),
]


@pytest.mark.parametrize("url, secrets, by_shape", MALFORMED, ids=[f"url-{i}" for i in range(len(MALFORMED))])
def test_malformed_urls_never_show_their_password(url: str, secrets: list[str], by_shape: bool) -> None:
    shown = redact_url(url)
    assert "***" in shown, shown
    try:
        raise ValueError(f"Could not parse SQLAlchemy URL from string {url!r} (connect to {url})")
    except ValueError:
        tb = traceback.format_exc()
    texts = [shown, redact_text(f"cannot open {url}: failed", url), redact_text(tb, url),
             redact_text(tb, url.strip()), redact_text(repr(url), url)]
    if by_shape:  # the URL is not at hand: the shape alone must give the password away
        texts += [redact_text(f"storage {url!r} refused"), redact_text(tb)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (url, text)
    assert "Traceback" in redact_text(tb, url)  # the rest of the text is kept


@pytest.mark.parametrize("url", ["sqlite:////tmp/x/sweep.db", "journal:/tmp/j.log", "postgresql://u@h/db",
                                 "postgresql://u@h/db?sslmode=require", "postgresql://[::1]:5432/db",
                                 "sqlite:////tmp/x@y/sweep.db"])
def test_redact_keeps_urls_without_secrets(url: str) -> None:
    assert redact_url(url) == url
    assert redact_text(f"cannot open {url}", url) == f"cannot open {url}"


def test_redacted_urls_keep_user_and_host() -> None:
    assert redact_url("postgresql+psycopg2://u:S3cretPW@127.0.0.1:5432/db") == "postgresql+psycopg2://u:***@127.0.0.1:5432/db"
    assert redact_url("postgresql:/bob:pw@db/s") == "postgresql:/bob:***@db/s"
    assert redact_url("postgresql://u@h/db?password=x&sslmode=require") == "postgresql://u@h/db?password=***&sslmode=require"
    # Text that only looks like code or mail is left alone unless it holds user:password@.
    text = "@dataclass\nsee alice@example.com, journal:/tmp/x.log and sqlite:////tmp/s.db; a bypass=1"
    assert redact_text(text) == text


CLI = [
    ["create", "--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic", "--storage", "{url}"],
    ["status", "--name", "x", "--storage", "{url}"],
    ["status", "--name", "x", "--run-dir", "{run}"],  # the URL from the environment variable
    ["create", "--name", "x", "--run-dir", "{run}", "--grid", "demo-quadratic"],
]
CLI_URLS = ["postgresql:/bob:S3cretPW@db/s", "bob:S3cretPW@db/s", "postgresql://u:S3cretPW@[::1]:9/s",
            " postgresql://bob:S3cretPW@127.0.0.1:9/s ", "sqlite://bob:S3cretPW@x/sweep.db",
            "journal:/no/such/bob:S3cretPW@x"]


@pytest.mark.parametrize("url", CLI_URLS)
@pytest.mark.parametrize("argv", CLI, ids=["create-arg", "status-arg", "status-env", "create-env"])
def test_sweep_errors_never_show_a_malformed_urls_password(url: str, argv: list[str], tmp_path, capsys,
                                                          monkeypatch) -> None:
    monkeypatch.setenv(STORAGE_ENV, url)
    code = main([a.format(run=tmp_path / "run", url=url) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    assert "S3cret" not in out + err, err
