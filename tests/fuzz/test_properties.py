"""Property-based fuzzing (hypothesis): hostile configs, URLs with secrets in every position, raw HTTP requests.

CI runs a modest number of examples; a longer run is the same tests with more examples:

    VQA_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider

Properties: loading a config ends in a :class:`Config` or a :class:`ConfigError` whose problems are
one line each and carry no secret (never another exception); masking removes every planted secret;
the HTTP endpoint answers every request with a well-formed status line or closes it, and keeps serving.
"""
from __future__ import annotations

import os
import socket
import string
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor.config import Config, ConfigError, parse_config
from monitor.redact import SECRET_PARAMS, redact_text, redact_url
from monitor.server import MetricsServer

EXAMPLES = int(os.environ.get("VQA_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(max_examples=EXAMPLES or 150, deadline=5000, suppress_health_check=[HealthCheck.too_slow],
                database=None)
SECRET_MARK = "ZQX"  # planted secrets are ZQX + letters/digits: found in any output by plain search

secrets = st.text(string.ascii_letters + string.digits, min_size=6, max_size=24).map(lambda s: SECRET_MARK + s)


# -- configs -------------------------------------------------------------------------------------------------
KEYS = ["streams", "metrics", "engine", "defaults", "checks", "quality", "name", "url", "stride", "loop",
        "realtime", "open_timeout_s", "read_timeout_s", "reconnect_min_s", "reconnect_max_s", "ring_windows",
        "ffmpeg_options", "listen", "prefer", "max_batch", "max_wait_ms", "threads", "model_dir", "black",
        "freeze", "no_video", "frame_rate", "bitrate", "window", "min_duration", "warn", "crit", "<<", "bogus"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=40), st.sampled_from(["demo:", "lavfi:testsrc2", "rtsp://h/x", "${NOPE}",
                                                           "$${X}", "127.0.0.1:9108", "http://?token=x"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=6)),
    max_leaves=40)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


def assert_clean_outcome(text: str, tmp: Path, planted: list[str] = ()) -> None:
    try:
        config = parse_config(text, base_dir=tmp, environ={})
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)
        for secret in planted:
            assert secret not in str(exc)
    else:
        assert isinstance(config, Config)


@FUZZ
@given(document=documents)
def test_structured_hostile_configs_load_or_fail_cleanly(document: dict[str, Any], tmp_path_factory) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    assert_clean_outcome(text, tmp_path_factory.getbasetemp())


VALID = ("metrics: {listen: '127.0.0.1:9108'}\nengine: {prefer: [classical], max_batch: 4}\n"
         "defaults: {stride: 7, read_timeout_s: 3, ffmpeg_options: {rtsp_transport: tcp}}\n"
         "checks: {freeze: {min_duration: 8}}\nquality: {warn: 0.5}\n"
         "x: &a {read_timeout_s: 2}\n"
         "streams:\n  - {name: cam, url: 'rtsp://u:PASS@h:554/live?token=TOK', <<: *a}\n  - {name: d, url: 'demo:'}\n")


@FUZZ
@given(data=st.data(), secret=secrets)
def test_mutated_yaml_text_loads_or_fails_cleanly(data: st.DataObject, secret: str, tmp_path_factory) -> None:
    text = VALID.replace("PASS", secret).replace("TOK", secret[::-1])
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "repeat"]))
        if action == "insert":
            text = text[:at] + data.draw(st.text(":{}[]&*!|>-'\"#%@`,?\n\t ${}" + string.ascii_letters, max_size=8)) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 20)):]
        else:
            text = text[:at] + text[at:at + 30] * data.draw(st.integers(2, 40)) + text[at:]
    # only secrets still in a credential position count (a mutation may leave a bare word, or cut one in two)
    planted = [s for s, where in ((secret, f":{secret}@"), (secret[::-1], f"token={secret[::-1]}"))
               if where in text and text.count(s) == text.count(where)]
    assert_clean_outcome(text, tmp_path_factory.getbasetemp(), planted)


# -- URLs with secrets -----------------------------------------------------------------------------------
hosts = st.sampled_from(["cam.example", "10.0.0.5", "[::1]", "cdn-1.example.com", "h"])
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
path_segments = st.lists(st.text(string.ascii_letters + string.digits + "-_.~", min_size=1, max_size=10), max_size=4)
password_chars = string.ascii_letters + string.digits + "/:@!$&'()*+,;=-._~%"
passwords = st.text(password_chars, min_size=1, max_size=12).map(lambda s: SECRET_MARK + s)
secret_names = st.sampled_from(sorted(SECRET_PARAMS) + ["auth_key", "wsSecret", "txSecret", "wmsAuthSign",
                                                        "secret_key", "X-Amz-Signature", "upstreamToken", "Sign"])
param_values = st.text(string.ascii_letters + string.digits + "-_.~%+/=:", max_size=16)


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    planted: list[str] = []
    scheme = draw(st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "tcp", "udp", "srt"]))
    userinfo = ""
    kind = draw(st.sampled_from(["none", "user:password", "token"]))
    if kind == "user:password":
        password = draw(passwords)
        userinfo = f"{draw(st.text(string.ascii_letters, min_size=1, max_size=8))}:{password}@"
        planted.append(password)
    elif kind == "token":
        token = draw(secrets)
        userinfo = f"{token}@"
        planted.append(token)
    path = "/" + "/".join(draw(path_segments))
    if scheme.startswith("rtmp"):
        key = draw(secrets)
        path = f"/{draw(st.sampled_from(['live', 'app']))}/{key}"
        planted.append(key)
    params = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            value = draw(secrets)
            params.append(f"{draw(secret_names)}={value}")
            planted.append(value)
        else:
            params.append(f"{draw(st.sampled_from(['profile', 'a', 'x-y', 'channel']))}={draw(param_values)}")
    query = ("?" + "&".join(params)) if params else ""
    fragment = ""
    if draw(st.booleans()):
        value = draw(secrets)
        fragment = f"#{draw(secret_names)}={value}"
        planted.append(value)
    return f"{scheme}://{userinfo}{draw(hosts)}{draw(ports)}{path}{query}{fragment}", planted


@settings(FUZZ, max_examples=EXAMPLES or 400)
@given(case=secret_urls(), before=st.text(max_size=30), after=st.sampled_from(["", " ", "'", '"', "\n", ": failed"]))
def test_no_planted_secret_survives_masking(case: tuple[str, list[str]], before: str, after: str) -> None:
    url, planted = case
    masked = redact_url(url)
    in_text = redact_text(f"{before} open failed: '{url}'{after}")
    quoted_by_ffmpeg = redact_text(f"{url}{after}", [url])
    for secret in planted:
        assert secret not in masked, (url, masked)
        assert secret not in quoted_by_ffmpeg, (url, quoted_by_ffmpeg)
        if "'" not in url:  # in free text a URL ends at a quote; the URLs being opened are passed as secrets
            assert secret not in in_text, (url, in_text)


@settings(FUZZ, max_examples=EXAMPLES or 300)
@given(text=st.text(max_size=2000))
def test_masking_any_text_is_idempotent_and_total(text: str) -> None:
    once = redact_text(text)
    assert isinstance(once, str) and redact_text(once) == once


# -- raw HTTP requests ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[str, int]]:
    server = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: (True, "ready"))
    server.start()
    yield server.address
    server.stop()


methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"G\x00T", b""])
targets = st.one_of(st.sampled_from([b"/metrics", b"/healthz", b"/readyz", b"/", b"*", b"//", b"/metrics?x=1",
                                     b"http://h/metrics", b"/%00", b"/" + b"a" * 5000]), st.binary(max_size=64))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1.1", b"", b"FOO"])
headers = st.lists(st.tuples(st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection",
                                              b"Expect", b"X"]) | st.binary(max_size=20),
                             st.sampled_from([b"x", b"-1", b"99999999999", b"chunked", b"close", b"100-continue",
                                              b"keep-alive"]) | st.binary(max_size=40)), max_size=8)


@settings(FUZZ, max_examples=EXAMPLES or 80)
@given(method=methods, target=targets, version=versions, header_list=headers, body=st.binary(max_size=200),
       line_end=st.sampled_from([b"\r\n", b"\n", b"\r"]))
def test_any_http_request_gets_an_answer_or_a_close(endpoint: tuple[str, int], method: bytes, target: bytes,
                                                    version: bytes, header_list: list[tuple[bytes, bytes]],
                                                    body: bytes, line_end: bytes) -> None:
    request = b" ".join(part for part in (method, target, version) if part) + line_end
    request += b"".join(name + b": " + value + line_end for name, value in header_list) + line_end + body
    with socket.create_connection(endpoint, timeout=15) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            reply = sock.recv(65536)
        except ConnectionError:
            reply = b""
    assert reply == b"" or reply.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), reply[:200]
    with socket.create_connection(endpoint, timeout=5) as probe:
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert probe.recv(4096).startswith(b"HTTP/1.1 200 ")
