"""The `facesr serve` web app: the upload page and the HTTP API it uses (aiohttp, like facesr/stream).

    GET    /                            the page (static/index.html, static/app.js)
    GET    /api/config                  models, modes, limits: what the page offers
    POST   /api/jobs                    multipart: file; optional mode (faces|whole), model, strength -> 202 {"id": ...}
    GET    /api/jobs/{id}               {"state": "queued|running|done|failed", "progress": 0..1, "error": null|"...", ...}
    GET    /api/jobs/{id}/result        the result file, as an attachment with a safe name
    GET    /api/jobs/{id}/compare/{bicubic|facesr}   the compare view's two PNGs, the same size
    DELETE /api/jobs/{id}               forget the job and delete its files now

Uploads are streamed to disk, never held in memory: over `max_upload_mb` they get 413 (from the
Content-Length header before any of the body is read, else as soon as the count passes it); not a
photo or video by content, 415; beyond `max_queue` jobs and uploads at once, 503. Jobs run in
JobQueue's worker threads; the event loop only receives, answers and sweeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..models import MODELS, PIXEL_MODEL
from ..weights import MAX_GAN_STRENGTH
from .jobs import MODES, JobQueue, Refused, inspect_upload
from .options import ServeOptions

log = logging.getLogger("facesr.serve")

STATIC = resources.files(__package__) / "static"
FORM_SLACK = 64 * 1024  # room for the multipart framing and the small fields beside the file
CHUNK = 256 * 1024
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
               "frame-ancestors 'none'")


def model_choices(default: str | None) -> tuple[dict[str, str], str, float]:
    """({name the page shows: spec load_generator takes}, default name, default GAN strength): the shipped
    models, and a .safetensors `--model` as a choice of its own. A person can only pick from these: never a path."""
    from ..errors import UserError
    from ..runtime import model_name
    from ..weights import parse_gan_strength

    choices = {m: m for m in MODELS}
    spec = model_name(default)
    if spec.endswith(".safetensors"):
        name = Path(spec).stem
        choices[name] = spec
        return choices, name, 1.0
    name, strength = parse_gan_strength(spec)
    if name not in choices:
        raise UserError(f"--model {spec}: choose {', '.join(MODELS)} (srgan@0.5: a GAN strength) or a .safetensors file")
    return choices, name, 1.0 if strength is None else strength


class ServeApp:
    """The aiohttp application, its job queue and its sweeper."""

    def __init__(self, opts: ServeOptions | None = None):
        self.opts = opts = opts or ServeOptions()
        self.models, self.default_model, self.default_strength = model_choices(opts.model)
        self.queue = JobQueue(opts)
        self.app = web.Application(client_max_size=64 * 1024, middlewares=[self._headers])
        self.app.add_routes([
            web.get("/", self.index),
            web.get("/app.js", self.script),
            web.get("/api/config", self.config),
            web.get("/api/health", self.health),
            web.post("/api/jobs", self.create, expect_handler=self.expect),
            web.get("/api/jobs/{id}", self.status),
            web.delete("/api/jobs/{id}", self.delete),
            web.get("/api/jobs/{id}/result", self.result),
            web.get("/api/jobs/{id}/compare/{which}", self.compare),
        ])
        self.app.on_startup.append(self._start_sweeper)
        self.app.on_cleanup.append(self.shutdown)
        self._sweeper: asyncio.Task | None = None

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404/405/413: JSON with one line, like ours
            if exc.status < 400:
                raise
            response = _error(exc.status, exc.reason)
        response.headers.update(SECURITY_HEADERS)
        return response

    # --- the page --------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "index.html").read_text(), content_type="text/html",
                            headers={"Content-Security-Policy": PAGE_POLICY})

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(text=(STATIC / "app.js").read_text(), content_type="application/javascript")

    async def config(self, request: web.Request) -> web.Response:
        o = self.opts
        return web.json_response({
            "models": list(self.models),
            "default_model": self.default_model,
            "default_strength": self.default_strength,
            "gan_models": {m: p for m, p in PIXEL_MODEL.items() if m in self.models},
            "max_strength": MAX_GAN_STRENGTH,
            "modes": list(MODES),
            "scale": o.scale,
            "max_upload_mb": o.max_upload_mb,
            "max_video_seconds": o.max_video_seconds,
            "jobs": o.jobs,
            "keep_seconds": o.keep_seconds,
        })

    async def health(self, request: web.Request) -> web.Response:
        q = self.queue
        return web.json_response({"ok": True, "running": q.running, "active": q.active()})

    # --- jobs ------------------------------------------------------------------------------

    def _too_large(self) -> web.Response:
        return _error(413, f"the file is larger than the limit of {self.opts.max_upload_mb:g} MB")

    async def expect(self, request: web.Request):
        """`Expect: 100-continue`: refuse an oversized upload before the client sends any of it."""
        if request.content_length is not None and request.content_length > self.opts.max_upload_bytes + FORM_SLACK:
            return self._too_large()
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the body proper has not started (as aiohttp's own handler does)
        return None

    async def create(self, request: web.Request) -> web.Response:
        limit = self.opts.max_upload_bytes
        if request.content_length is not None and request.content_length > limit + FORM_SLACK:
            return self._too_large()
        if not request.content_type.startswith("multipart/"):
            return _error(415, "send the file as multipart/form-data in a field named file")
        folder = self.queue.reserve()
        if folder is None:
            return _error(503, f"the server is busy ({self.opts.max_queue} jobs waiting); try again in a minute",
                          headers={"Retry-After": "30"})
        keep = False
        try:
            fields, filename, size = await self._receive(request, folder / "upload", limit)
            if size is None:
                return self._too_large()
            mode, spec, label = self._choices(fields)
            if filename is None:
                return _error(400, "no file: send it in a multipart field named file")
            if size == 0:
                return _error(400, "the file is empty")
            loop = asyncio.get_running_loop()
            media = await loop.run_in_executor(None, inspect_upload, folder / "upload", self.opts)
            job = self.queue.submit(folder, media, mode, spec, label, filename)
            keep = True
        except Refused as exc:
            return _error(exc.status, str(exc))
        except BadForm as exc:
            return _error(400, str(exc))
        finally:
            self.queue.release(folder, keep)
        location = f"/api/jobs/{job.id}"
        return web.json_response({"id": job.id, "state": job.state, "url": location}, status=202,
                                 headers={"Location": location})

    async def _receive(self, request: web.Request, dest: Path, limit: int) -> tuple[dict[str, str], str | None, int | None]:
        """The form's small fields, the file's name (None: no file part) and its size (None: over the limit),
        the file streamed to `dest` in chunks."""
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError, KeyError) as exc:
            raise BadForm(f"not a multipart form ({exc})") from None
        fields: dict[str, str] = {}
        filename, size = None, 0
        try:
            while (part := await reader.next()) is not None:
                if part.name == "file" and filename is None:
                    filename = part.filename or "upload"
                    with open(dest, "wb") as out:
                        while chunk := await part.read_chunk(CHUNK):
                            size += len(chunk)
                            if size > limit:
                                return fields, filename, None
                            out.write(chunk)
                elif part.name in ("mode", "model", "strength"):
                    value = await _small(part)
                    fields[part.name] = value
                else:
                    raise BadForm(f"unexpected form field {str(part.name)[:40]!r}: send file, mode, model, strength")
        except ValueError as exc:  # a malformed body
            raise BadForm(f"malformed multipart body ({exc})") from None
        return fields, filename, size

    def _choices(self, fields: dict[str, str]) -> tuple[str, str, str]:
        """(mode, model spec, model label) from the form, or BadForm."""
        mode = fields.get("mode") or "faces"
        if mode not in MODES:
            raise BadForm(f"mode {mode!r}: choose faces (faces over a bicubic background) or whole (the whole image, tiled)")
        label = fields.get("model") or self.default_model
        if label not in self.models:
            raise BadForm(f"model {label!r}: choose {', '.join(self.models)}")
        spec = self.models[label]
        strength = (fields.get("strength") or "").strip()
        if strength:
            if label not in PIXEL_MODEL:
                raise BadForm(f"strength applies to the GAN models ({', '.join(PIXEL_MODEL)}), not {label}")
            try:
                value = float(strength)
            except ValueError:
                raise BadForm(f"strength {strength!r} is not a number") from None
            if not 0.0 <= value <= MAX_GAN_STRENGTH:
                raise BadForm(f"strength {value:g}: between 0 ({PIXEL_MODEL[label]}) and {MAX_GAN_STRENGTH:g}")
            if value != 1.0:
                spec = f"{label}@{value:g}"
                label = spec
        return mode, spec, label

    def _job(self, request: web.Request):
        job = self.queue.get(request.match_info["id"])
        if job is None:
            raise web.HTTPNotFound(reason=f"no such job (results are kept {self.opts.keep_seconds / 60:g} minutes)")
        return job

    async def status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        m, s = job.media, self.opts.scale
        eta = job.eta()
        done = job.state == "done"
        base = f"/api/jobs/{job.id}"
        return web.json_response({
            "id": job.id,
            "state": job.state,
            "progress": round(job.progress, 4),
            "error": job.error,
            "kind": m.kind,
            "mode": job.mode,
            "model": job.label,
            "done": job.done,
            "total": job.total,
            "unit": job.unit,
            "ahead": self.queue.ahead(job) if job.state == "queued" else 0,
            "eta_seconds": None if eta is None else round(eta, 1),
            "seconds": None if job.seconds is None else round(job.seconds, 2),
            "input": {"format": m.format, "width": m.width, "height": m.height, "seconds": m.seconds, "audio": m.audio},
            "output": {"width": m.width * s, "height": m.height * s},
            "faces": job.faces,
            "result": f"{base}/result" if done else None,
            "download_name": job.download_name,
            "compare": {"bicubic": f"{base}/compare/bicubic", "facesr": f"{base}/compare/facesr"} if done else None,
        })

    async def delete(self, request: web.Request) -> web.Response:
        self.queue.delete(self._job(request))
        return web.json_response({"deleted": True})

    def _file(self, job, path: Path | None, headers: dict[str, str] | None = None) -> web.StreamResponse:
        if job.state != "done" or path is None or not path.is_file():
            what = f"failed: {job.error}" if job.state == "failed" else job.state
            return _error(409 if job.state in ("queued", "running") else 410, f"no result: the job is {what}")
        return web.FileResponse(path, headers=headers or {})

    async def result(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        kind = "video/mp4" if job.media.kind == "video" else "image/png"
        return self._file(job, job.result, {"Content-Type": kind, "Cache-Control": "no-store",
                                            "Content-Disposition": f'attachment; filename="{job.download_name}"'})

    async def compare(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        which = request.match_info["which"]
        if which not in ("bicubic", "facesr"):
            raise web.HTTPNotFound(reason="compare/bicubic or compare/facesr")
        if which == "bicubic":
            path = job.dir / "bicubic.png"
        else:
            path = job.result if job.media.kind == "image" else job.dir / "preview.png"
        return self._file(job, path, {"Content-Type": "image/png", "Cache-Control": "no-store"})

    # --- life cycle ------------------------------------------------------------------------

    async def _start_sweeper(self, app: web.Application) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        every = max(0.05, min(60.0, self.opts.keep_seconds / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            gone = await loop.run_in_executor(None, self.queue.sweep)
            if gone:
                log.info("deleted %d finished job(s) older than %g s", gone, self.opts.keep_seconds)

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Stop the sweeper and the workers and delete every upload and result."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.get_running_loop().run_in_executor(None, self.queue.close)


class BadForm(ValueError):
    pass


async def _small(part, limit: int = 200) -> str:
    """A small text field's value (at most `limit` bytes are read into memory)."""
    data = b""
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > limit:
            raise BadForm(f"form field {part.name!r} is too long")
    return data.decode("utf-8", "replace").strip()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
