#!/usr/bin/python3
"""A live RTSP server on loopback for the tests: GStreamer's gst-rtsp-server (Debian packages).

Run it with Debian's ``/usr/bin/python3`` (python3-gi is not in the virtual environment)::

    /usr/bin/python3 tests/rtsp_server.py --port 8554                       # videotestsrc, 640x360@25
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --pattern snow --width 1280 --height 720
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --udp-port 5004       # relay H.264 RTP from udp

Serves ``rtsp://127.0.0.1:PORT/MOUNT`` (default mount ``live``), H.264 baseline, a keyframe every
second, one shared media for all clients. With ``--udp-port`` it relays H.264 RTP arriving on that
UDP port (for example ``ffmpeg -re -stream_loop -1 -i clip.ts -c copy -an -f rtp -payload_type 96
'rtp://127.0.0.1:5004?pkt_size=1200'``), so a given clip is served in real time.

Prints ``READY rtsp://127.0.0.1:PORT/MOUNT`` on stdout once it listens. Stop it with SIGTERM or SIGKILL;
SIGSTOP/SIGCONT hang and resume it.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(args: argparse.Namespace) -> str:
    if args.udp_port:
        return (
            f'( udpsrc port={args.udp_port} caps="application/x-rtp,media=video,clock-rate=90000,'
            'encoding-name=H264,payload=96" ! rtph264depay ! h264parse config-interval=-1 ! '
            "rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} ! "
        f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bframes=0 ! "
        "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="live")
    parser.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball, smpte, snow, black...)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--udp-port", type=int, default=0, help="relay H.264 RTP from this UDP port instead")
    args = parser.parse_args()

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


if __name__ == "__main__":
    sys.exit(main())
