"""Secrets in storage URLs: redact them wherever a URL is shown, written or passed to another process.

A database URL such as ``postgresql+psycopg2://user:S3cret@host:5432/db`` must never reach a terminal, a log,
a report or a command line (``ps`` shows every process's arguments to every local user). :func:`redact_url`
is the one function that hides the password; workers receive the real URL through the environment variable
:data:`STORAGE_ENV` (or a file only its owner can read), never through ``argv``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

STORAGE_ENV = "DEEPLIMIT_STORAGE_URL"
_MASK = "***"
_SECRET_KEYS = {"password", "pass", "pwd", "passwd", "secret", "token", "sslpassword", "api_key", "apikey"}


def redact_url(url: str) -> str:
    """Return ``url`` with its password (user-info and query parameters) replaced by ``***``.

    The user-info part ends at the *last* ``@`` before the host, so a password containing a raw ``@``
    (``postgresql://u:p@ss@host/db``) is hidden whole; ``?password=…`` style parameters are hidden too.
    Non-URL strings (``journal:PATH``, plain paths) come back unchanged.
    """
    if not isinstance(url, str):
        return url
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)(.*)$", url, flags=re.S)
    if not m:
        return url
    scheme, netloc, rest = m.groups()
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{_MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    if "?" in rest:
        path, _, query = rest.partition("?")
        fragment = ""
        if "#" in query:
            query, _, fragment = query.partition("#")
        pairs = [(k, _MASK if k.lower() in _SECRET_KEYS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        rest = path + "?" + urlencode(pairs, safe="*") + (("#" + fragment) if fragment else "")
    return scheme + netloc + rest


def redact_text(text: str, *urls: str) -> str:
    """Replace every occurrence of each URL in ``urls`` (and of its password) in ``text`` by the redacted URL."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact_url(url))
        for secret in _passwords(url):
            if len(secret) >= 3:
                text = text.replace(secret, _MASK)
    return text


def _passwords(url: str) -> list[str]:
    out = []
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)", url)
    if m and "@" in m.group(1):
        userinfo = m.group(1).rsplit("@", 1)[0]
        if ":" in userinfo:
            out.append(userinfo.split(":", 1)[1])
    if "?" in url:
        query = url.split("?", 1)[1].split("#", 1)[0]
        out += [v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in _SECRET_KEYS and v]
    return out
