"""Credential masking for stream URLs and for any text that may contain one.

Stream URLs may carry secrets in two places: the userinfo (``rtsp://user:secret@host/...``) and the
query string (``https://cdn/live.m3u8?token=secret``). They must never reach a metric label, a log
line or an error message, so everything that prints a URL goes through :func:`redact_url`, and every
log line goes through :func:`redact_text` as a last line of defence (FFmpeg error messages quote the
URL they failed to open).

    >>> redact_url("rtsp://admin:hunter2@cam.example:554/live?token=abc&profile=1")
    'rtsp://admin:***@cam.example:554/live?token=***&profile=1'
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose values are secrets (compared lower-case, '-' and '_' ignored).
SECRET_PARAMS = frozenset(
    {
        "token", "accesstoken", "authtoken", "auth", "authorization", "apikey", "key", "secret",
        "clientsecret", "password", "passwd", "pass", "pwd", "sig", "signature", "credential",
        "credentials", "session", "sessionid", "sid", "jwt", "hdnts", "hdnea", "policy", "xamzsignature",
        "xamzcredential", "xamzsecuritytoken", "streamkey", "passphrase",
    }
)

# scheme://userinfo@ anywhere in a text (userinfo = anything up to '@' without '/', space or quote).
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# name=value pairs in a query string (after '?' or '&', or ';'), value up to the next separator.
_PARAM_RE = re.compile(r"(?P<sep>[?&;])(?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&#\s'\"<>]*)")


def _is_secret_param(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "").replace(".", "") in SECRET_PARAMS


def _mask_userinfo(userinfo: str) -> str:
    user, sep, _password = userinfo.partition(":")
    if sep:
        return f"{user}:{MASK}"
    # A lone userinfo is often a bare token (https://TOKEN@host); mask it entirely.
    return MASK


def redact_url(url: str) -> str:
    """``url`` with the password (or a bare userinfo token) and secret query values replaced by ``***``.

    Non-URL strings (file paths, ``lavfi:`` graphs) come back unchanged except for secret-looking
    ``name=value`` pairs after ``?``/``&``.
    """
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or not parts.netloc:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{_mask_userinfo(userinfo)}@{hostport}"
    query = _PARAM_RE.sub(_param_sub, "?" + parts.query)[1:] if parts.query else parts.query
    fragment = parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _param_sub(match: re.Match[str]) -> str:
    if _is_secret_param(match["name"]) and match["value"]:
        return f"{match['sep']}{match['name']}={MASK}"
    return match.group(0)


def _userinfo_sub(match: re.Match[str]) -> str:
    return f"{match['scheme']}{_mask_userinfo(match['userinfo'])}@"


def redact_text(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Mask URL credentials and secret query parameters anywhere in ``text``.

    ``secrets``: extra literal strings (for example the raw URLs being opened) replaced by their
    :func:`redact_url` form first, which also covers FFmpeg messages that quote a URL oddly.
    """
    if not text:
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, redact_url(secret))
    text = _USERINFO_RE.sub(_userinfo_sub, text)
    return _PARAM_RE.sub(_param_sub, text)


def has_credentials(url: str) -> bool:
    """Whether :func:`redact_url` would change ``url``."""
    return redact_url(url) != url
