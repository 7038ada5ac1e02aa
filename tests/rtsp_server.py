#!/usr/bin/python3
"""A live RTSP server on loopback for the tests and the benchmarks: GStreamer's gst-rtsp-server (Debian packages).

Run it with Debian's ``/usr/bin/python3`` (python3-gi is not in the virtual environment)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554                       # videotestsrc, 640x360@25
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --pattern snow --width 1280 --height 720
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --clip monitor/demo/demo.mp4   # an H.264 clip, looped
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --udp-port 5004       # relay H.264 RTP from udp
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --clip clip.ts --audio  # and its audio, as Opus

Serves ``rtsp://127.0.0.1:PORT/MOUNT`` (default mount ``live``), H.264, one shared media for all
clients. The live pattern is baseline with a keyframe every second. ``--clip`` serves an H.264 file in
real time, looped, without re-encoding: the server remuxes it to MPEG-TS (Annex B with SPS/PPS in
band, which h264parse needs, and a TS loops cleanly, where FFmpeg's h264_mp4toannexb on a looped MP4
stops at the first wrap), and its own ``ffmpeg -re -stream_loop -1`` relays that as RTP, ending with
the server (also when the server is killed). ``--udp-port`` alone relays H.264 RTP that something
else sends to that port. ``--audio`` (with ``--clip``) also serves the clip's first audio track,
re-encoded to Opus by the relay and carried as a second RTP payload (``pay1``, pt 97).

Prints ``READY rtsp://127.0.0.1:PORT/MOUNT`` on stdout once it listens. Stop it with SIGTERM or SIGKILL;
SIGSTOP/SIGCONT hang and resume it.
"""
import argparse
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PR_SET_PDEATHSIG = 1


def launch_line(args: argparse.Namespace) -> str:
    if args.udp_port:
        audio = (f' udpsrc port={args.audio_udp_port} caps="application/x-rtp,media=audio,clock-rate=48000,'
                 'encoding-name=OPUS,payload=97" ! rtpopusdepay ! rtpopuspay name=pay1 pt=97'
                 if getattr(args, "audio_udp_port", 0) else "")
        return (
            f'( udpsrc port={args.udp_port} caps="application/x-rtp,media=video,clock-rate=90000,'
            'encoding-name=H264,payload=96" ! rtph264depay ! h264parse config-interval=-1 ! '
            f"rtph264pay name=pay0 pt=96 config-interval=1{audio} )"
        )
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} ! "
        f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bframes=0 ! "
        "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the relay's child process: SIGKILL it when the server dies, however the server dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_relay(ffmpeg: str, clip: Path, udp_port: int, workdir: Path, audio_udp_port: int = 0) -> subprocess.Popen:
    """``clip`` as MPEG-TS in ``workdir``, then looped in real time as H.264 RTP to ``udp_port`` (and its
    first audio track as Opus RTP to ``audio_udp_port``, if given)."""
    relay = workdir / "clip.ts"
    no_audio = [] if audio_udp_port else ["-an"]
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(clip), "-c", "copy", *no_audio,
                    "-f", "mpegts", str(relay)], check=True, timeout=60)
    audio = (["-map", "0:a:0", "-c:a", "libopus", "-b:a", "128k", "-ar", "48000", "-f", "rtp", "-payload_type", "97",
              f"rtp://127.0.0.1:{audio_udp_port}?pkt_size=1200"] if audio_udp_port else [])
    video = ["-map", "0:v:0", "-c:v", "copy"] if audio_udp_port else ["-c", "copy", "-an"]
    return subprocess.Popen([ffmpeg, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(relay),
                             *video, "-f", "rtp", "-payload_type", "96",
                             f"rtp://127.0.0.1:{udp_port}?pkt_size=1200", *audio],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)


def serve(args: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    server.get_mount_points().add_factory(f"/{args.mount}", factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda *_: (loop.quit(), False)[1])
    print(f"READY rtsp://127.0.0.1:{args.port}/{args.mount}", flush=True)
    loop.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="live")
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, snow, black...)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--clip", type=Path, help="serve this H.264 file in real time, looped, instead")
    parser.add_argument("--udp-port", type=int, default=0, help="relay H.264 RTP from this UDP port instead")
    parser.add_argument("--audio", action="store_true", help="with --clip: serve its audio too (Opus)")
    args = parser.parse_args()
    if args.clip is None:
        return serve(args)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None or not args.clip.is_file():
        print(f"ERROR {'ffmpeg not found' if ffmpeg is None else f'no such clip: {args.clip}'}", flush=True)
        return 1
    args.udp_port = args.udp_port or free_udp_port()
    args.audio_udp_port = free_udp_port() if args.audio else 0
    with tempfile.TemporaryDirectory(prefix="vqa-rtsp-") as workdir:
        relay = start_relay(ffmpeg, args.clip, args.udp_port, Path(workdir), args.audio_udp_port)
        try:
            return serve(args)
        finally:
            relay.terminate()
            try:
                relay.wait(5)
            except subprocess.TimeoutExpired:
                relay.kill()


if __name__ == "__main__":
    sys.exit(main())
