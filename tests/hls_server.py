"""A live HLS ladder on 127.0.0.1 for the tests: ffmpeg's hls muxer + python's http.server.

* ``mode="var_stream_map"``: one ffmpeg writes every variant and the master playlist itself
  (``-var_stream_map "v:0 v:1 ..." -master_pl_name master.m3u8``), the way a packager would.
* ``mode="per_variant"``: one ffmpeg per variant into the same folder and a master playlist written here
  in ffmpeg's own format (:meth:`HlsLadder.write_master`), so one variant can be killed alone
  (:meth:`HlsLadder.kill_variant`) and the master can list other variants at run time.

Each variant copies a clip (``-c copy``: no encoding, little CPU); give clips of different sizes.
The HTTP server (:class:`http.server.ThreadingHTTPServer`, in a thread of the test process) serves the
folder and, with ``auth=(user, password)``, answers 401 with a Basic challenge to requests without those
credentials, so a test proves the credentials in a URL were really used.
"""
from __future__ import annotations

import base64
import functools
import http.server
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from servers import _stop_process, ffmpeg_exe, free_port, wait_until


@dataclass(frozen=True)
class VariantSpec:
    clip: Path
    bandwidth: int  # bits/s, as the master playlist's BANDWIDTH (var_stream_map: ffmpeg adds 10 %)
    resolution: str  # "640x360"


class _Handler(http.server.SimpleHTTPRequestHandler):
    auth_header: str | None = None
    counts: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.auth_header is not None and self.headers.get("Authorization") != self.auth_header:
            self.counts["unauthorized"] = self.counts.get("unauthorized", 0) + 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="hls"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.counts["authorized"] = self.counts.get("authorized", 0) + 1
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


class HlsLadder:
    def __init__(self, directory: Path, variants: list[VariantSpec], *, mode: str = "per_variant",
                 auth: tuple[str, str] | None = None, port: int | None = None, segment_s: int = 1,
                 list_size: int = 5) -> None:
        assert mode in ("per_variant", "var_stream_map"), mode
        self.directory = Path(directory)
        self.variants = list(variants)
        self.mode = mode
        self.auth = auth
        self.port = port or free_port()
        self.segment_s, self.list_size = segment_s, list_size
        self.producers: dict[int, subprocess.Popen[bytes]] = {}
        self.counts: dict[str, int] = {}
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.log_path = self.directory.parent / f"{self.directory.name}.ffmpeg.log"

    # URLs --------------------------------------------------------------------------------------------
    def url(self, name: str = "master.m3u8", credentials: bool = True) -> str:
        userinfo = f"{self.auth[0]}:{self.auth[1]}@" if self.auth and credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/{name}"

    @property
    def master_url(self) -> str:
        return self.url()

    def playlist(self, index: int) -> Path:
        return self.directory / f"v{index}.m3u8"

    def segments(self, index: int) -> list[str]:
        try:
            return [line for line in self.playlist(index).read_text().splitlines() if line.endswith(".ts")]
        except OSError:
            return []

    # producers -----------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "HlsLadder":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.mode == "var_stream_map":
            self._start_muxer()
        else:
            for index in range(len(self.variants)):
                self.start_variant(index)
            self.write_master(range(len(self.variants)))
        for index in range(len(self.variants)):
            wait_until(lambda: len(self.segments(index)) >= 2, timeout, what=f"variant {index} with 2 segments")
        wait_until(lambda: "#EXT-X-STREAM-INF" in self._read("master.m3u8"), timeout, what="master playlist")
        self._serve()
        return self

    def _hls_args(self, playlist: str, segments: str) -> list[str]:
        return ["-f", "hls", "-hls_time", str(self.segment_s), "-hls_list_size", str(self.list_size),
                "-hls_flags", "delete_segments+independent_segments",
                "-hls_segment_filename", str(self.directory / segments), str(self.directory / playlist)]

    def _popen(self, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_path, "ab")
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def _start_muxer(self) -> None:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error"]
        for spec in self.variants:
            cmd += ["-re", "-stream_loop", "-1", "-i", str(spec.clip)]
        for index in range(len(self.variants)):
            cmd += ["-map", f"{index}:v"]
        cmd += ["-c", "copy"]
        for index, spec in enumerate(self.variants):
            cmd += [f"-b:v:{index}", str(spec.bandwidth)]
        cmd += ["-master_pl_name", "master.m3u8",
                "-var_stream_map", " ".join(f"v:{i}" for i in range(len(self.variants)))]
        cmd += self._hls_args("v%v.m3u8", "v%v_%05d.ts")
        self.producers[-1] = self._popen(cmd)

    def start_variant(self, index: int) -> None:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
               str(self.variants[index].clip), "-c", "copy", "-an",
               *self._hls_args(f"v{index}.m3u8", f"v{index}_%05d.ts")]
        self.producers[index] = self._popen(cmd)

    def write_master(self, indexes) -> None:
        """A master playlist listing these variants, as ffmpeg writes one (written atomically)."""
        lines = ["#EXTM3U", "#EXT-X-VERSION:6"]
        for index in indexes:
            spec = self.variants[index]
            lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={spec.bandwidth},RESOLUTION={spec.resolution}", f"v{index}.m3u8", ""]
        tmp = self.directory / "master.m3u8.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.directory / "master.m3u8")

    def kill_variant(self, index: int, wipe: bool) -> None:
        """SIGKILL one variant's producer (no ENDLIST is written); ``wipe`` deletes its playlist and
        segments (then HTTP answers 404), otherwise they stay: a stalled playlist."""
        proc = self.producers.pop(index, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if wipe:
            for child in self.directory.glob(f"v{index}[._]*"):
                child.unlink()

    def kill_all(self, wipe: bool) -> None:
        """SIGKILL every producer; ``wipe`` deletes every file, the master playlist too."""
        for index in list(self.producers):
            self.kill_variant(index, wipe=False)
        if wipe:
            for child in self.directory.iterdir():
                child.unlink()

    # HTTP ------------------------------------------------------------------------------------------------
    def _serve(self) -> None:
        auth = None
        if self.auth:
            auth = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        handler = type("Handler", (_Handler,), {"auth_header": auth, "counts": self.counts})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), functools.partial(handler, directory=str(self.directory)))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="hls-http", daemon=True).start()

    def _read(self, name: str) -> str:
        try:
            return (self.directory / name).read_text()
        except OSError:
            return ""

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        for proc in list(self.producers.values()):
            _stop_process(proc)
        self.producers.clear()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
