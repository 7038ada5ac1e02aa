"""Credential masking for stream URLs and for any text that may contain one.

Stream URLs may carry secrets in the userinfo (``rtsp://user:secret@host/...``, also with an unencoded
``/`` in the password), in the query string or fragment (``https://cdn/live.m3u8?token=secret``,
``...#token=secret``) and, for RTMP, in the path (the stream key: ``rtmp://host/app/KEY``). They must
never reach a metric label, a log line or an error message, so everything that prints a URL goes
through :func:`redact_url`, and every log line goes through :func:`redact_text` as a last line of
defence (FFmpeg error messages quote the URL they failed to open).

    >>> redact_url("rtsp://admin:hunter2@cam.example:554/live?token=abc&profile=1")
    'rtsp://admin:***@cam.example:554/live?token=***&profile=1'

Masking runs in time linear in the length of the text (every log line passes through it): the URL
scanner below is written by hand, because a regular expression for "scheme://userinfo@" backtracks
quadratically over long runs of scheme-like characters.
"""
from __future__ import annotations

import re

MASK = "***"

# Query/fragment parameter names whose values are secrets (compared lower-case, '-', '_' and '.' ignored).
SECRET_PARAMS = frozenset(
    {
        "token", "accesstoken", "authtoken", "auth", "authorization", "apikey", "key", "secret",
        "clientsecret", "password", "passwd", "pass", "pwd", "sig", "sign", "signature", "credential",
        "credentials", "session", "sessionid", "sid", "jwt", "hdnts", "hdnea", "policy", "xamzsignature",
        "xamzcredential", "xamzsecuritytoken", "streamkey", "passphrase", "authkey", "wssecret", "txsecret",
        "wmsauthsign", "secretkey",
    }
)
# A name containing one of these is a secret too (e.g. ``upstream_token``, ``cdnSecret``).
SECRET_NAME_PARTS = ("secret", "token", "passw", "signature", "authsign", "authkey", "apikey", "streamkey", "credential")

_MAX_SCHEME = 32
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_URL_END_RE = re.compile(r"[\s'\"<>]")  # where a URL quoted in free text ends
_NO_END_RE = re.compile(r"(?!)")
# "user:password@" without a scheme in front (a path built from a URL, "rtsp:/u:pw@h" after normalising):
# the part after the last ':' before '@' is masked. No ':' in the class keeps it linear.
_LOOSE_USERINFO_RE = re.compile(r":(?P<password>[^\s/@'\"<>:]+)@")  # redact_url: the whole string is the URL (a password may hold a quote)
# name=value pairs after '?', '&', ';' or '#', value up to the next separator (linear: no nesting).
_PARAM_RE = re.compile(r"(?P<sep>[?&;#])(?P<name>[A-Za-z0-9_.-]+)=(?P<value>[^&#;\s'\"<>]*)")


def _is_secret_param(name: str) -> bool:
    normal = name.lower().replace("-", "").replace("_", "").replace(".", "")
    return normal in SECRET_PARAMS or any(part in normal for part in SECRET_NAME_PARTS)


def _param_sub(match: re.Match[str]) -> str:
    if match["value"] and _is_secret_param(match["name"]):
        return f"{match['sep']}{match['name']}={MASK}"
    return match.group(0)


def _mask_userinfo(userinfo: str) -> str:
    user, sep, _password = userinfo.partition(":")
    if sep:
        return f"{user}:{MASK}"
    # A lone userinfo is often a bare token (https://TOKEN@host); mask it entirely.
    return MASK


def _scheme_start(text: str, sep: int, floor: int) -> int:
    """Start of the scheme that ends at ``text[sep]`` ("://"), or -1 when there is none."""
    start = sep
    limit = max(floor, sep - _MAX_SCHEME)
    while start > limit and text[start - 1] in _SCHEME_CHARS:
        start -= 1
    while start < sep and not text[start].isalpha():
        start += 1
    return start if start < sep else -1


def _mask_url(text: str, scheme: str, begin: int, end: int) -> str:
    """The part of a URL after "scheme://" (``text[begin:end]``) with userinfo and RTMP key masked."""
    query = end
    for mark in ("?", "#"):
        found = text.find(mark, begin, query)
        if found >= 0:
            query = found
    out = []
    authority = begin
    at = text.rfind("@", begin, query)
    if at >= 0:
        userinfo = text[begin:at]
        slash = userinfo.find("/")
        # '/' inside the userinfo: a password with an unencoded '/' when a ':' comes first; otherwise the
        # '@' belongs to the path (".../user@example.com") and there is no userinfo.
        if slash < 0 or 0 <= userinfo.find(":") < slash:
            out.append(_mask_userinfo(userinfo) + "@")
            authority = at + 1
    path = text.find("/", authority, query)
    if "rtmp" in scheme.lower() and path >= 0:  # rtmp, rtmps, rtmpt, rtmpe, rtmpte...
        key = text.find("/", path + 1, query)  # rtmp://host/app/KEY: everything after the app is the key
        if 0 <= key < query - 1:
            out.append(text[authority:key + 1] + MASK)
            out.append(text[query:end])
            return "".join(out)
    out.append(text[authority:end])
    return "".join(out)


def _mask_urls(text: str, ends: re.Pattern[str] = _URL_END_RE) -> str:
    out: list[str] = []
    done = 0  # text[:done] is in ``out``
    sep = text.find("://")
    start = _scheme_start(text, sep, 0) if sep >= 0 else -1
    while sep >= 0:
        following = text.find("://", sep + 3)
        next_start = _scheme_start(text, following, sep + 3) if following >= 0 else -1
        limit = next_start if next_start >= 0 else (following if following >= 0 else len(text))
        stop = ends.search(text, sep + 3, limit)
        end = stop.start() if stop else limit
        if start >= 0:
            out.append(text[done:sep + 3])
            out.append(_mask_url(text, text[start:sep], sep + 3, end))
            done = end
        sep, start = following, next_start
    out.append(text[done:])
    return "".join(out)


def redact_text(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Mask URL credentials, RTMP stream keys and secret query/fragment parameters anywhere in ``text``.

    ``secrets``: extra literal strings (for example the raw URLs being opened) replaced by their
    :func:`redact_url` form first, which also covers FFmpeg messages that quote a URL oddly.
    """
    if not text or not isinstance(text, str):
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, redact_url(secret))
    if "://" in text:
        text = _mask_urls(text)
    if "@" in text:
        text = _LOOSE_USERINFO_RE.sub(f":{MASK}@", text)
    return _PARAM_RE.sub(_param_sub, text)


def redact_url(url: str) -> str:
    """``url`` with the password (or a bare userinfo token), an RTMP stream key and secret query or
    fragment values replaced by ``***``.

    Non-URL strings (file paths, ``lavfi:`` graphs) come back unchanged except for secret-looking
    ``name=value`` pairs after ``?``/``&``/``#``.
    """
    if not isinstance(url, str) or not url:
        return url
    if "://" in url:
        url = _mask_urls(url, _NO_END_RE)
    return _PARAM_RE.sub(_param_sub, url)
