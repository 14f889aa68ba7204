"""`facesr stream`: wire a local source, a virtual camera and the WebRTC relay together, and stop cleanly."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from ..errors import UserError
from .options import StreamOptions
from .server import Relay, bitrate_for, release_frame_memory, set_video_bitrate

log = logging.getLogger("facesr.stream")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def start_site(app: web.Application, host: str, port: int,
                     request_timeout: float = StreamOptions.request_timeout) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0: any free port); returns the runner and the bound port.

    A connection that has not sent a whole request's headers, or sits idle between requests,
    for `request_timeout` seconds is closed (aiohttp's keep-alive timer covers both), so slow
    or stalled clients cannot pile up; Relay.offer bounds the body's time.
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=request_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, bound


def run_stream(opts: StreamOptions, make_enhancer: Callable[[], object], device: str = "cpu") -> None:
    if not opts.webrtc and opts.input is None:
        raise UserError("facesr stream needs --webrtc (a relay for browsers) and/or --input SRC")
    if opts.input is not None and not opts.webrtc and opts.virtual_camera is None:
        raise UserError("--input needs somewhere to send the enhanced video: --virtual-camera and/or --webrtc")
    if opts.input is None and opts.virtual_camera is not None:
        raise UserError("--virtual-camera needs a local source: --input SRC (a camera such as /dev/video0, or a file)")
    if opts.webrtc and not is_loopback(opts.host):
        print(f"facesr stream: warning: listening on {opts.host}, not loopback: anyone who can reach this "
              f"address can send you video (limits: {opts.max_peers} peers, offers up to {opts.max_offer_bytes} bytes)",
              file=sys.stderr)

    release_frame_memory()  # a long-running process: freed frames go back to the system
    source = sink = None
    if opts.input is not None:
        from .source import LocalSource
        from .virtualcam import VirtualCameraSink

        source = LocalSource(opts.input, make_enhancer(), loop=opts.loop)
        if opts.virtual_camera is not None:
            try:
                sink = VirtualCameraSink(source, opts.virtual_camera or None)
            except UserError as exc:
                if not opts.webrtc:
                    source.stop()
                    raise
                print(f"facesr stream: warning: {exc}; serving browsers only", file=sys.stderr)
    try:
        asyncio.run(_serve(opts, make_enhancer, device, source, sink))
    finally:
        if sink is not None:
            sink.stop()
        if source is not None:
            source.stop()
            if source.error:
                raise UserError(source.error)


async def _serve(opts: StreamOptions, make_enhancer, device: str, source, sink) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = None
    if source is not None:
        source.start()
        w, h = source.out_size
        print(f"facesr stream: {opts.input} {source.width}x{source.height} -> {w}x{h} at {source.fps:g} fps", file=sys.stderr)
    if sink is not None:
        sink.start()
        print(f"facesr stream: virtual camera {sink.device}", file=sys.stderr)
    if opts.webrtc:
        out = source.out_size if source is not None else (320 * opts.scale, 180 * opts.scale)
        set_video_bitrate(opts.bitrate or bitrate_for(*out))
        relay = Relay(make_enhancer, opts, source=source, device=device)
        runner, port = await start_site(relay.app, opts.host, opts.port, opts.request_timeout)
        host = f"[{opts.host}]" if ":" in opts.host else opts.host
        print(f"facesr stream: open http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        while not stop.is_set():
            if source is not None and source.finished and (sink is not None or not opts.webrtc):
                break  # a file played to its end, with no browsers to serve
            if source is not None and source.error:
                break  # the camera was lost: say so (run_stream) and stop, rather than serve a still picture
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        if runner is not None:
            await runner.cleanup()  # closes every peer (Relay.shutdown)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
