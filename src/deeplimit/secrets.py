"""Secrets in storage URLs: redact them wherever a URL is shown, written or passed to another process.

A database URL such as ``postgresql+psycopg2://user:S3cret@host:5432/db`` must never reach a terminal, a log,
a report or a command line (``ps`` shows every process's arguments to every local user). :func:`redact_url`
and :func:`redact_text` hide passwords; workers receive the real URL through the environment variable
:data:`STORAGE_ENV` (or a file only its owner can read), never through ``argv``.

Redaction does not trust any URL parser: a mistyped URL (``postgresql:/bob:pw@db/s`` with one slash, no scheme,
a raw ``@`` or ``/`` in the password, surrounding whitespace) is not a URL to ``urllib`` or SQLAlchemy, but its
password is still a password. Anything *shaped* like ``user:password@host`` — a run of non-blank characters
with a colon before its last ``@`` — loses what follows the colon, and every ``password=…`` style parameter
loses its value. Over-masking an odd string (``mailto:a@b``) is the price of never leaking a password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["STORAGE_ENV", "redact_url", "redact_text"]

STORAGE_ENV = "DEEPLIMIT_STORAGE_URL"
_MASK = "***"
_SECRET_KEYS = ("password", "pass", "pwd", "passwd", "secret", "token", "sslpassword", "api_key", "apikey")

# key=value parameters whose value is a secret, wherever they appear (query strings, DSNs, log lines).
_KEYS = "|".join(_SECRET_KEYS)
_SECRET_PARAM = re.compile(rf"(?i)(?<![A-Za-z0-9_])((?:{_KEYS})\s*=\s*)([^&\s'\"#;,)>]+)")
# A leading "key=" (e.g. url=postgresql://…) and a scheme followed by at least one slash: not part of the user.
_PREFIX = re.compile(r"(?:[\w.\-]*=)?(?:[A-Za-z][A-Za-z0-9+.\-]*:/+)?")
_OPENERS = "'\"`([{<"


def _split_userinfo(body: str) -> tuple[str, str, str] | None:
    """``(prefix_and_user, password, rest)`` of a URL-like string whose user-info holds a colon, else None.

    The user-info ends at the last ``@`` before the query (``?``) or fragment (``#``), so a password holding a
    raw ``@`` or ``/`` is taken whole; the password starts after the first colon past the scheme.
    """
    end = min((i for i in (body.find("?"), body.find("#")) if i >= 0), default=len(body))
    at = body.rfind("@", 0, end)
    if at <= 0:
        return None
    userinfo = body[:at]
    lead = len(userinfo) - len(userinfo.lstrip(_OPENERS + " \t\r\n"))
    start = _PREFIX.match(userinfo, lead).end()
    colon = userinfo.find(":", start)
    if colon < 0:
        return None
    return body[:colon + 1], userinfo[colon + 1:], body[at:]


def _mask_userinfo(token: str) -> str:
    parts = _split_userinfo(token)
    if parts is None or not parts[1]:
        return token
    return parts[0] + _MASK + parts[2]


def redact_url(url: str) -> str:
    """Return ``url`` with its password (user-info and ``password=…`` parameters) replaced by ``***``.

    Works on whatever string was given as a URL, malformed ones included (one slash after the scheme, no
    scheme, ``@``/``/``/spaces in the password, a password without a user, IPv6 hosts); strings with no
    password (``sqlite:///PATH``, ``journal:PATH``, ``postgresql://u@h/db``) come back unchanged.
    """
    if not isinstance(url, str):
        return url
    return _SECRET_PARAM.sub(lambda m: m.group(1) + _MASK, _mask_userinfo(url))


def redact_text(text: str, *urls: str | None) -> str:
    """``text`` with every password hidden: those of ``urls`` (as written or percent-decoded) wherever they
    appear, and anything shaped like ``user:password@`` or ``password=…`` (see the module doc).

    Use it on every message, log line, traceback or report text that may have seen a storage URL.
    """
    if not isinstance(text, str):
        return text
    for url in urls:
        if not isinstance(url, str) or not url:
            continue
        text = text.replace(url, redact_url(url)).replace(url.strip(), redact_url(url.strip()))
        for secret in sorted(_passwords(url), key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, _MASK)
    text = re.sub(r"\S+", lambda m: _mask_userinfo(m.group(0)), text)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + _MASK, text)


def _passwords(url: str) -> set[str]:
    """The secrets inside ``url``: its user-info password and secret parameters, raw and percent-decoded."""
    found: set[str] = set()
    for candidate in {url, url.strip()}:
        parts = _split_userinfo(candidate)
        if parts is not None and parts[1]:
            found.add(parts[1])
        found.update(m.group(2) for m in _SECRET_PARAM.finditer(candidate))
    return (found | {unquote(s) for s in found} | {unquote(s).strip() for s in found}) - {""}
