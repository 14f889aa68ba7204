"""`facesr serve`: check the model loads, serve the app until Ctrl-C or SIGTERM, then delete every file."""

from __future__ import annotations

import asyncio
import signal
import sys

from ..stream.run import is_loopback, start_site
from .app import ServeApp
from .options import ServeOptions


def run_serve(opts: ServeOptions) -> None:
    from ..weights import detector_model_path

    if not is_loopback(opts.host):
        print(f"facesr serve: warning: listening on {opts.host}, not loopback: anyone who can reach this address "
              f"can upload files (limits: {opts.max_upload_mb:g} MB, {opts.max_queue} jobs waiting, "
              f"{opts.jobs} at a time)", file=sys.stderr)
    app = ServeApp(opts)  # a --model that is not one fails here, with one line
    try:
        app.queue.generator(app.models[app.default_model])  # and one that does not load, here
        detector_model_path("full")  # fetched now (or verified) rather than in the first job
        asyncio.run(_serve(app))
    finally:
        app.queue.close(wait=0)


async def _serve(app: ServeApp) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, port = await start_site(app.app, app.opts.host, app.opts.port)
    host = f"[{app.opts.host}]" if ":" in app.opts.host else app.opts.host
    print(f"facesr serve: open http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # stops the workers and deletes uploads and results (ServeApp.shutdown)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
