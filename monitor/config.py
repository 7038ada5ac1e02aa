"""The configuration file: typed models, ``${ENV}`` expansion, and errors that name the key.

Layout (see the shipped ``config.yaml`` for every key with its default)::

    metrics: {listen: "127.0.0.1:9108"}
    engine:  {prefer: [...], max_batch: 16, max_wait_ms: 100, threads: null, model_dir: null}
    defaults: {stride: 7, loop: true, open_timeout_s: 10, read_timeout_s: 5, ...}   # per-stream options
    checks:  {black: {min_duration: 2}, freeze: {...}, ...}    # signal checks (monitor.signals)
    quality: {warn: 0.6, crit: 0.4, ...}                        # quality state (monitor.quality_state)
    shard:   {count: 1, index: 0}                              # this instance's part of the streams (monitor.sharding)
    streams:
      - {name: cam1, url: "rtsp://user:${CAM1_PASSWORD}@10.0.0.5/live", read_timeout_s: 3,
         checks: {freeze: {min_duration: 8}}}

Every per-stream option lives in :class:`StreamOptions`; a value under ``defaults:`` applies to all
streams and any stream may override it. The ``checks:`` and ``quality:`` sections work the same way
for their nested settings: the top-level section applies to all streams, and a stream's own
``checks:``/``quality:`` overrides it key by key (``checks: {black: {min_duration: 1}}`` changes only
that key). Adding an option is one field in :class:`StreamOptions`; adding a section is one field in
:class:`Config` (``extra="forbid"`` everywhere, so unknown keys are errors).

:func:`load_config` returns a validated :class:`Config` or raises :class:`ConfigError` carrying
*every* problem found, each as ``key.path: value: why`` with credentials masked.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from monitor.hls import HlsConfig, ladder_problem
from monitor.quality_state import QualityConfig
from monitor.redact import redact_text, redact_url
from monitor.sharding import ShardConfig
from monitor.signals import ChecksConfig
from monitor.snapshots import SnapshotsConfig
from monitor.strict import Strict
from monitor.web.settings import WebConfig

STREAM_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
_NAME_RE = re.compile(STREAM_NAME_PATTERN)
DEFAULT_LISTEN = "127.0.0.1:9108"

# URL forms a stream may use (besides plain file paths).
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp")
# Schemes users may expect that cannot work with this installation, and why (tests/monitor/test_config.py
# checks each reason against PyAV's FFmpeg).
UNSUPPORTED_SCHEMES = {"srt": "the bundled FFmpeg has no SRT protocol"}
SPECIAL_SCHEMES = ("file", "lavfi", "demo")
DEMO_CLIP = Path(__file__).resolve().parent / "demo" / "demo.mp4"


class ConfigError(Exception):
    """An unusable configuration; ``problems`` lists every one as ``key.path: value: why``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = [" ".join(p.splitlines()) for p in problems]  # one line each, whatever the input held
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# ------------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """How to open a stream URL with PyAV.

    kind: ``rtsp`` | ``network`` (http/https/rtmp/udp/tcp) | ``file`` | ``lavfi``.
    target: what is passed to ``av.open`` (a URL, an absolute path, or a lavfi graph).
    live: True when the source runs in real time by itself (network); files and lavfi graphs are
    paced to their frame rate by the reader so they behave like live sources.
    """

    kind: str
    target: str
    scheme: str

    @property
    def live(self) -> bool:
        return self.kind in ("rtsp", "network")


def parse_source(url: str, base_dir: Path | None = None) -> Source:
    """Classify a stream URL; ``ValueError`` with a user-facing reason when it cannot be used.

    ``demo:`` is the clip shipped with the package (``monitor/demo/demo.mp4``); ``lavfi:GRAPH`` an
    FFmpeg filter graph source (e.g. ``lavfi:testsrc2=size=1280x720:rate=25``); a path without a
    scheme (or ``file:PATH``) is a file, relative to the config file's folder.
    """
    url = url.strip()
    if not url:
        raise ValueError("empty URL")
    if not url.isprintable():
        raise ValueError("contains a control character (a newline or tab, for example)")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    scheme = match.group(1).lower() if match else ""
    if len(scheme) == 1:  # a Windows drive letter is not a scheme
        scheme = ""
    if scheme in ("rtsp", "rtsps"):
        _require_host(url)
        return Source("rtsp", url, scheme)
    if scheme in UNSUPPORTED_SCHEMES:
        raise ValueError(f"{scheme}:// cannot be read: {UNSUPPORTED_SCHEMES[scheme]}")
    if scheme in NETWORK_SCHEMES:
        _require_host(url)
        return Source("network", url, scheme)
    if scheme == "lavfi":
        graph = url[len("lavfi:"):].strip()
        if not graph:
            raise ValueError("lavfi: needs a filter graph, e.g. lavfi:testsrc2=size=1280x720:rate=25")
        return Source("lavfi", graph, scheme)
    if scheme == "demo":
        if url[len("demo:"):].strip():
            raise ValueError("demo: takes nothing after the colon")
        if not DEMO_CLIP.is_file():
            raise ValueError(f"the demo clip {DEMO_CLIP} is missing from this installation")
        return Source("file", str(DEMO_CLIP), scheme)
    if scheme == "file":
        path_text = re.sub(r"^file:(//)?", "", url)
    elif scheme:
        allowed = ", ".join(NETWORK_SCHEMES + SPECIAL_SCHEMES)
        raise ValueError(f"bad URL scheme {scheme!r} (expected one of {allowed}, or a file path)")
    else:
        path_text = url
    path = Path(os.path.expanduser(path_text))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return Source("file", str(path.resolve()), "file")
    except OSError as exc:  # e.g. a path component longer than the file system allows
        raise ValueError(f"unusable file path: {exc.strerror or exc}") from None


def _require_host(url: str) -> None:
    rest = url.split(":", 1)[1]
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0] if rest.startswith("//") else ""
    host = authority.rpartition("@")[2]
    if not host or host.startswith(":"):
        raise ValueError("URL has no host (expected scheme://host[:port]/...)")


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
class StreamOptions(Strict):
    """Per-stream options; the ``defaults:`` section sets them for all streams."""

    stride: int = Field(7, ge=1, le=1000, strict=True, description=(
        "frames between the starts of consecutive 7-frame windows: 7 = back to back, 1..6 = overlapping "
        "(more windows to score), >7 = skip `stride - 7` decoded frames after each window (less work)"))
    loop: bool = Field(True, strict=True, description=(
        "files: start again at the end, so a file behaves like a live stream; with false the stream stays "
        "down after the end (`vqa_stream_up` 0)"))
    realtime: bool | None = Field(None, strict=True, description=(
        "pace frames to their timestamps; null = yes for files and `lavfi:` sources, no for network sources"))
    open_timeout_s: float = Field(10.0, ge=0.1, le=600, strict=True, description="seconds allowed to open the source")
    read_timeout_s: float = Field(5.0, ge=0.1, le=600, strict=True, description=(
        "seconds without data before the source counts as down (then it is reconnected)"))
    reconnect_min_s: float = Field(0.5, ge=0.05, le=3600, strict=True, description=(
        "first reconnect delay; it doubles after every failure, up to `reconnect_max_s`"))
    reconnect_max_s: float = Field(10.0, ge=0.05, le=3600, strict=True, description=(
        "cap of the reconnect delay, plus 0-20 % random jitter; reconnecting goes on forever and the delay "
        "resets once frames flow again. Must be at least `reconnect_min_s`"))
    ring_windows: int = Field(8, ge=1, le=1024, strict=True, description=(
        "complete windows held per stream waiting to be scored; when full, the oldest is dropped "
        "(`vqa_windows_dropped_total`). Memory per stream: `ring_windows` + 2 windows of 1.05 MB"))
    ffmpeg_options: dict[str, str] = Field(default_factory=dict, description=(
        "extra FFmpeg/PyAV open options, e.g. `{rtsp_transport: udp}`; they override the built-in timeout and "
        "transport options. Numbers and booleans become strings; a null, list or mapping is an error"))

    @model_validator(mode="after")
    def _backoff_order(self) -> "StreamOptions":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) must not exceed reconnect_max_s ({self.reconnect_max_s})")
        return self

    @field_validator("ffmpeg_options", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        """Scalars become FFmpeg's strings (``true`` -> ``"true"``); a null, list or mapping is an error."""
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"option name {key!r} must be a non-empty string")
            if isinstance(item, bool):
                item = str(item).lower()
            elif isinstance(item, (int, float)):
                item = str(item)
            elif not isinstance(item, str):
                raise ValueError(f"{key}: {type(item).__name__} value; FFmpeg options are strings or numbers")
            out[key] = item
        return out


class StreamConfig(StreamOptions):
    """One stream: a unique ``name`` (the ``stream`` label) and a ``url``, plus any per-stream option."""

    name: str = Field(description=(
        "unique, `[a-z0-9][a-z0-9_-]*`, at most 64 characters; the `stream` label of every metric"))
    url: str = Field(description=(
        "where the stream is read from: `rtsp(s)://`, `http(s)://`, `rtmp(s)://`, `udp://`, `tcp://`, a file path, "
        "`lavfi:GRAPH` or `demo:`"))
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description=(
        "signal checks of this stream: the top-level `checks:` section with this stream's keys on top"))
    quality: QualityConfig = Field(default_factory=QualityConfig, description=(
        "quality state thresholds of this stream: the top-level `quality:` section with this stream's keys on top"))
    hls: HlsConfig = Field(default_factory=HlsConfig, description=(
        "HLS playlist health and ladder of this stream: the top-level `hls:` section with this stream's keys on top"))

    @model_validator(mode="after")
    def _hls_fits_url(self) -> "StreamConfig":
        problem = ladder_problem(self.url, self.hls)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"must match {STREAM_NAME_PATTERN} (lower-case letters, digits, '_' and '-')")
        if len(value) > 64:
            raise ValueError("must be at most 64 characters")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        base_dir = (info.context or {}).get("base_dir")
        source = parse_source(value, base_dir)
        # Relative file paths become absolute (relative to the config file), so that the stream can
        # be opened from any working directory and a reload compares like with like.
        return source.target if source.kind == "file" and source.scheme == "file" else value

    @property
    def source(self) -> Source:
        return parse_source(self.url)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


class MetricsConfig(Strict):
    listen: str = Field(DEFAULT_LISTEN, description=(
        "`HOST:PORT` or `[V6]:PORT` serving `/metrics`, `/healthz` and `/readyz`. Loopback by default; "
        "`0.0.0.0:9108` or `[::]:9108` lets a Prometheus on another host scrape it. A change needs a restart "
        "(a reload logs a warning and keeps the old address)"))

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` / ``"[V6]:PORT"`` -> (host, port); ValueError with the reason."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\w+)|([^:\s]+):(\w+)", value.strip())
    if not match:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9108 or [::1]:9108")
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError(f"{host!r} is not a host name or IPv4 address")
    return host, int(port_text)


class EngineConfig(Strict):
    prefer: list[str] | None = Field(None, description=(
        "engines to try in order, each `backend[:model]` (tensorrt, onnxruntime, torch, classical; models "
        "aqs_effnet_b0 (default), aqs_effnet_lite0, aqs_mnv3_small); null = the built-in fastest-first chain. "
        "`--check` validates the names; whether an engine loads is known only at start"))
    max_batch: int = Field(16, ge=1, le=256, strict=True, description=(
        "most windows per inference call, across all streams. An engine that scores no faster in bigger batches "
        "takes fewer at a time, so they are published sooner (ONNX Runtime on CPU: 4). A reload may lower it but "
        "not raise it above the value the daemon started with"))
    max_wait_ms: float = Field(100.0, ge=0, le=10000, strict=True, description=(
        "how long a partial batch waits for more windows before it is scored anyway"))
    threads: int | None = Field(None, ge=1, le=1024, strict=True, description=(
        "inference threads, used by onnxruntime (intra-op threads), torch (its CPU thread pool) and classical "
        "(feature threads); null = the engine's choice (ONNX Runtime: all cores but one, so decoding keeps a "
        "core; torch: its own; classical: 1); refused when `prefer` names tensorrt, which takes no thread count"))
    model_dir: str | None = Field(None, description=(
        "folder with model files and their `manifest.json` (it must exist; relative to the config file's "
        "folder); null = the ones shipped in `engines/models/`"))

    @field_validator("model_dir")
    @classmethod
    def _model_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base_dir = (info.context or {}).get("base_dir")
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            exists = path.is_dir()
        except OSError as exc:
            raise ValueError(f"unusable folder path: {exc.strerror or exc}") from None
        if not exists:
            raise ValueError(f"folder not found: {path}")
        return value

    @field_validator("prefer")
    @classmethod
    def _prefer(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from engines.chain import parse_preference  # imports no inference library

        parse_preference(value)
        return value

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None, info: ValidationInfo) -> int | None:
        prefer = info.data.get("prefer")  # absent when prefer itself was invalid
        if value is not None and prefer is not None:
            from engines.chain import parse_preference

            parse_preference(prefer, threads=value)  # refuses a named backend that takes no thread count
        return value


# Top-level sections that every stream inherits and may override key by key.
PER_STREAM_SECTIONS: dict[str, type[BaseModel]] = {"checks": ChecksConfig, "quality": QualityConfig,
                                                   "hls": HlsConfig}


class Config(Strict):
    """The whole file. New sections: add a field here; a section that streams inherit and override key by
    key also goes in :data:`PER_STREAM_SECTIONS` and :class:`StreamConfig`."""

    streams: list[StreamConfig] = Field(default_factory=list, description=(
        "the streams to watch (default none: the daemon then runs, logs a warning and `/readyz` answers 503)"))
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="the HTTP endpoint Prometheus scrapes")
    engine: EngineConfig = Field(default_factory=EngineConfig, description=(
        "the inference engine all streams share, and how windows are batched for it"))
    defaults: StreamOptions = Field(default_factory=StreamOptions, description=(
        "per-stream options for every stream; any stream may override any of them. The merge is per key and "
        "shallow: a stream's `ffmpeg_options` replaces the whole `defaults` mapping"))
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description=(
        "signal checks on every stream's decoded picture and packets. A stream's own `checks:` overrides them "
        "key by key at every level (`checks: {freeze: {min_duration: 10}}` changes only that key). A check "
        "raises its gauge after its condition held `min_duration` seconds and clears it after it stayed false "
        "`clear_duration` seconds; a disabled check's gauge stays 0. Not allowed under `defaults:`"))
    quality: QualityConfig = Field(default_factory=QualityConfig, description=(
        "the quality state (ok / warn / crit) of every stream, from the AQS of consecutive windows with "
        "hysteresis. A stream's own `quality:` overrides it key by key (`quality: {warn: 0.5}` keeps the rest). "
        "Not allowed under `defaults:`"))
    shard: ShardConfig = Field(default_factory=ShardConfig, description=(
        "which part of the stream list this instance runs when several instances share this file "
        "(rendezvous hashing of the stream names); `--shard I/N` overrides `count` and `index`"))
    hls: HlsConfig = Field(default_factory=HlsConfig, description=(
        "HLS streams: playlist health (stale playlists, discontinuities, fetch errors) and ladders (a master "
        "playlist's variants as streams `NAME/RENDITION`, see docs/hls.md). A stream's own `hls:` overrides it "
        "key by key. A ladder is placed on a shard as one stream. Not allowed under `defaults:`"))
    web: WebConfig = Field(default_factory=WebConfig, description=(
        "the read-only status page on the metrics port (docs/web.md); a change needs a restart"))
    snapshots: SnapshotsConfig = Field(default_factory=SnapshotsConfig, description=(
        "JPEG snapshots of every stream and its incidents, kept on disk for the status page; a change needs a restart"))

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Merge ``defaults:``, ``checks:`` and ``quality:`` into each stream so that every stream is a
        complete :class:`StreamConfig`.

        An invalid top-level section is reported once under its own key and not copied into the streams.
        """
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults") or {}
        streams = data.get("streams")
        if not isinstance(defaults, dict) or not isinstance(streams, list):
            return data
        base = _valid_dump(StreamOptions, defaults, info)
        sections = {key: _valid_dump(model, data.get(key) or {}, info) for key, model in PER_STREAM_SECTIONS.items()}
        merged = []
        for stream in streams:
            merged.append(_merge_stream(base, sections, stream) if isinstance(stream, dict) else stream)
        return {**data, "streams": merged}


def _valid_dump(model: type[BaseModel], data: Any, info: ValidationInfo) -> dict[str, Any]:
    """``data`` validated and dumped complete, or {} when invalid (its errors are reported at its own key)."""
    try:
        return model.model_validate(data, context=info.context).model_dump()
    except ValidationError:
        return {}


def _merge_stream(base: dict[str, Any], sections: dict[str, dict[str, Any]], stream: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **stream}
    for key, section in sections.items():
        override = stream.get(key)
        merged[key] = deep_merge(section, {} if override is None else override)
    return merged


def deep_merge(base: dict[str, Any], override: Any) -> Any:
    """``override`` on top of ``base``, nested mappings merged key by key; a non-mapping override wins
    as is (so that validation reports it where the user wrote it)."""
    if not isinstance(override, dict):
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(base[key], value) if isinstance(base.get(key), dict) else value
    return out


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
MAX_CONFIG_BYTES = 1024 * 1024  # a config with thousands of streams is ~0.5 MB
MAX_YAML_DEPTH = 32  # the schema nests 4 deep; deeper input only serves to exhaust the stack
MAX_YAML_NODES = 250_000  # values after alias expansion (a "billion laughs" file stops here)
MAX_INT_DIGITS = 20


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with limits, so that no file can exhaust the stack, memory or time.

    * nesting deeper than :data:`MAX_YAML_DEPTH` is refused (no RecursionError);
    * every node's size is counted with aliases expanded (what the validation then walks), and a
      document over :data:`MAX_YAML_NODES` values is refused, as is an alias to its own parent;
    * integers over :data:`MAX_INT_DIGITS` digits and duplicate keys in a mapping are refused.

    Written as a subclass of PyYAML's pure-Python loader because PyYAML has none of these limits and
    the file is small (:data:`MAX_CONFIG_BYTES`).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
        self._total = 0  # values composed so far, aliases expanded: refused as soon as it is too many

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None and id(node) not in self._sizes:
                raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} refers to its own parent",
                                                  event.start_mark)
            self._count(self._sizes.get(id(node), 1), event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._count(1, self.peek_event().start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in _children(node))
        return node

    def _count(self, values: int, mark: Any) -> None:
        self._total += values
        if self._total > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_YAML_NODES} values once aliases are "
                                              "expanded", mark)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], Any] = {}
            for key_node, _value in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(None, None, f"an integer of {digits} digits is too large",
                                                    node.start_mark)
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
# YAML 1.1 reads 1e-3 (no dot) as a string; read it as the number everyone means.
_BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                     list("-+0123456789"))


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _load_yaml(text: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, environ: dict[str, str] | os._Environ[str], path: str = "", problems: list[str] | None = None) -> Any:
    """Replace ``${VAR}`` (and ``${VAR:-default}``) in every string; ``$$`` is a literal ``$``.

    A variable that is not set (and has no default) is a problem reported at its key path.
    """
    problems = problems if problems is not None else []
    if isinstance(data, dict):
        return {k: expand_env(v, environ, _join(path, str(k)), problems) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, environ, f"{path}[{i}]", problems) for i, v in enumerate(data)]
    if isinstance(data, str) and "$" in data:
        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            problems.append(f"{path or '<top>'}: ${{{name}}}: environment variable {name} is not set")
            return match.group(0)

        return _ENV_RE.sub(sub, data)
    return data


def _join(path: str, key: str) -> str:
    if not key.isprintable() or len(key) > 64:  # a key from the file is shown, never a line break
        key = repr(key[:64])
    return f"{path}.{key}" if path else key


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "union[")) or part in ("str", "int", "float", "bool", "list[str]", "none", "dict[str,str]"):
            continue  # pydantic's internal union/validator branches
        else:
            out = _join(out, str(part))
    return out or "<top>"


def _show_value(path: str, value: Any) -> str:
    if isinstance(value, dict):
        text = "{...}"
    elif isinstance(value, list):
        text = repr(value) if len(repr(value)) <= 120 else "[...]"
    else:
        text = repr(value)
    if path.endswith("url") and isinstance(value, str):
        text = repr(redact_url(value))
    return redact_text(text)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed next to the last key of ``loc`` (for "did you mean"), following nested models."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        nested = _model_in(field.annotation) if field is not None else None
        if nested is None:
            break
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: ``Model`` or ``list[Model]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        path = _format_loc(loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            close = difflib.get_close_matches(key, _known_keys(loc), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if loc == ("defaults", key) and key in PER_STREAM_SECTIONS:
                hint = f" ({key}: is a top-level section; a stream overrides it in its own {key}:)"
            line = f"{path}: unknown key{hint}"
        elif kind == "missing":
            line = f"{path}: missing: required key"
        else:
            message = item["msg"]
            message = re.sub(r"^(Value error|Assertion failed), ", "", message)
            line = f"{path}: {_show_value(path, item.get('input'))}: {message}"
        if line not in seen:
            seen.add(line)
            problems.append(redact_text(line))
    return problems


def _duplicate_names(data: dict[str, Any]) -> list[str]:
    streams = data.get("streams")
    if not isinstance(streams, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for index, stream in enumerate(streams):
        name = stream.get("name") if isinstance(stream, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(f"streams[{index}].name: {name!r}: duplicate stream name (also streams[{first[name]}])")
        else:
            first[name] = index
    return problems


def parse_config(text: str, *, source: str = "<config>", base_dir: Path | None = None,
                 environ: dict[str, str] | None = None) -> Config:
    """Validate YAML ``text``; raises :class:`ConfigError` listing every problem."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(source, [f"<file>: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        data = _load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = " ".join(" ".join(filter(None, [exc.context, exc.problem])).split())
        kind = "YAML syntax error" if isinstance(exc, (yaml.scanner.ScannerError, yaml.parser.ParserError)) else "YAML error"
        raise ConfigError(source, [f"<yaml>: {kind} at {where}: {what}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"<yaml>: YAML error: {' '.join(str(exc).split())}"]) from None
    except Exception as exc:  # noqa: BLE001 - PyYAML itself fails on some input (e.g. OverflowError on an escape)
        raise ConfigError(source, [f"<yaml>: cannot be parsed: {type(exc).__name__}: "
                                   f"{' '.join(redact_text(str(exc)[:200]).split())}"]) from None
    if data is None:
        raise ConfigError(source, ["<top>: the file is empty; expected at least a 'streams:' list"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"<top>: {type(data).__name__}: expected a mapping with a 'streams:' list"])
    problems: list[str] = []
    data = expand_env(data, os.environ if environ is None else environ, problems=problems)
    problems += _duplicate_names(data)
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems += _pydantic_problems(exc)
        config = None
    except Exception as exc:  # noqa: BLE001 - input must never end in a traceback; the reason is reported
        raise ConfigError(source, [f"<top>: cannot be validated: {type(exc).__name__}: "
                                   f"{redact_text(str(exc)[:200])}"]) from None
    if problems:
        raise ConfigError(source, problems)
    assert config is not None
    return config


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path`` (relative paths inside it are relative to its folder)."""
    path = Path(path)
    text = read_config_text(path)
    return parse_config(text, source=str(path), base_dir=path.resolve().parent, environ=environ)


def read_config_text(path: Path) -> str:
    """The file's text; :class:`ConfigError` for anything but a readable regular file of at most
    :data:`MAX_CONFIG_BYTES` bytes of UTF-8. Opened non-blocking, so a FIFO without a writer (or a
    device such as ``/dev/zero``) is refused at once instead of hanging or filling memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(str(path), ["<file>: not found"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"<file>: cannot be read: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(str(path), ["<file>: is a directory, not a config file"])
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(str(path), ["<file>: not a regular file (a FIFO, socket or device); "
                                          "give the path of a YAML file"])
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), [f"<file>: {info.st_size} bytes, larger than {MAX_CONFIG_BYTES}"])
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), [f"<file>: cannot be read: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), [f"<file>: larger than {MAX_CONFIG_BYTES} bytes"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"<file>: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None


def base_dir_of(path: str | Path) -> Path:
    return Path(path).resolve().parent
