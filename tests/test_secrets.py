"""Password redaction of storage URLs (issue: no password in any output, file or process list)."""

import pytest

from deeplimit.secrets import redact_text, redact_url


@pytest.mark.parametrize("url, secret", [
    ("postgresql+psycopg2://u:S3cretPW@127.0.0.1:5432/db", "S3cretPW"),
    ("postgresql://u:p@ss@w0rd@host/db", "p@ss@w0rd"),
    ("postgresql://u@host/db?password=S3cretPW&sslmode=require", "S3cretPW"),
    ("postgresql://u:a%40b@host:5/db?connect_timeout=3", "a%40b"),
])
def test_redact_hides_password(url, secret):
    red = redact_url(url)
    assert secret not in red and "***" in red
    assert red.split("://")[0] == url.split("://")[0]
    assert "host" in red or "127.0.0.1" in red
    assert secret not in redact_text(f"cannot open {url}: failed (password {secret} rejected)", url)


@pytest.mark.parametrize("url", ["sqlite:////tmp/x/sweep.db", "journal:/tmp/j.log", "postgresql://u@h/db",
                                 "postgresql://u@h/db?sslmode=require"])
def test_redact_keeps_urls_without_secrets(url):
    assert redact_url(url) == url
