"""`facesr video | image | stream | bench | eval | train | quantize | fetch-models`: parse the command line, call
the module that does the work, and turn its errors into one line and an exit status (facesr/errors.py)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .errors import UserError


def _bounded(kind: type, low: float, *, above: bool = False):
    """An argparse type: a `kind` (int or float) at least `low`, or with `above` greater than it."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < low or (above and value == low) or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low:g}")
        return value

    return parse


def _int_at_least(low: int):
    return _bounded(int, low)


def _number_at_least(low: float):
    return _bounded(float, low)


_positive_float = _bounded(float, 0.0, above=True)


def _number_pair(text: str) -> tuple[float, float]:
    """LOW,HIGH as two numbers (whether they make a valid range is checked where they are used)."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH (e.g. 1,1.4)") from None
    return low, high


def _add_scale_arg(p: argparse.ArgumentParser) -> None:
    from .paths import shipped_scales

    scales = shipped_scales()
    p.add_argument("--scale", type=int, default=max(scales), choices=scales,
                   help=f"upscaling factor, one the shipped weights have (default {max(scales)}; "
                        "a .safetensors --model brings its own)")


MODEL_HELP = ("lite-call (for calls: lite trained on call sequences), lite, lite-recurrent (remembers each face's "
              "previous frame), "
              "lite-photo (for photos: clean or JPEG), lite-gan, srresnet, "
              "srgan or a .safetensors file; a GAN model with @STRENGTH blends it with its pixel model: srgan@0.5 "
              "is half way from srresnet, @0 the pixel model, @1 as trained, up to @1.5 for more texture")


def _add_model_args(p: argparse.ArgumentParser, use: str = "call") -> None:
    from .options import DEFAULT_MODELS

    _add_scale_arg(p)
    default = DEFAULT_MODELS[use]
    p.add_argument("--model", default=None,
                   help=f"{MODEL_HELP} (default: {default['cpu']} on CPU, {default['cuda']} on CUDA)")
    _add_device_args(p)


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the generator runs (default auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "int8", "float32", "bfloat16", "float16"),
                   help="the generator's arithmetic: auto is float16 on CUDA; on a CPU, int8 (the model's int8 file "
                        "in ONNX Runtime, lite has one) on x86 CPUs with AVX2 and no AMX, else bfloat16 "
                        "on CPUs that have it in hardware (AVX-512 BF16, AMX), else float32")


def _add_face_args(p: argparse.ArgumentParser) -> None:
    from .options import EnhancerOptions

    default = EnhancerOptions()
    p.add_argument("--detector", default=default.detector, choices=("short", "full"),
                   help="BlazeFace model: full range finds faces from close-ups down to ~20 px (default); "
                        "short range only close-ups, a little faster")
    p.add_argument("--detector-model", default=None, metavar="FILE",
                   help="a BlazeFace .tflite file to use instead of the cached one (or set FACESR_DETECTOR_DIR)")
    p.add_argument("--detect-every", type=_int_at_least(1), default=default.detect_every, metavar="N",
                   help="run the detector every N frames while faces are tracked, optical flow between "
                        f"(default {default.detect_every})")


def _add_parallel_frames_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--parallel-frames", type=_int_at_least(1), default=2, metavar="N",
                   help="frames super-resolved at once, each in a thread of its own, while detection and "
                        "tracking keep frame order (default 2; 1: frame by frame)")


def _enhancer_options(args: argparse.Namespace, use: str = "call"):
    from .options import EnhancerOptions

    return EnhancerOptions(model=args.model, scale=args.scale, detector=args.detector,
                           detector_model=args.detector_model, device=args.device, precision=args.precision,
                           detect_every=args.detect_every, use=use)


def _data_arg(value: str | None, sub: str) -> Path | None:
    """A data folder option: the given folder, '' for none, or by default the data folder's SUB."""
    from .paths import data_dir

    if value == "":
        return None
    return Path(value) if value is not None else data_dir(sub)


def _check_report_paths(json_out: str | None, png: tuple[str, str | None]) -> None:
    """--json OUT and a PNG option (--figure, --plot): their folders exist and the PNG is a .png."""
    flag, png_out = png
    for path, what in ((json_out, "--json"), (png_out, flag)):
        if path and not Path(path).resolve().parent.is_dir():
            raise UserError(f"{what} {path}: no such directory")
    if png_out and Path(png_out).suffix.lower() != ".png":
        raise UserError(f"{flag} {png_out}: give a .png file")


# --- facesr video ----------------------------------------------------------------------


def cmd_video(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np

    from .enhancer import Enhancer, beside_codec_threads
    from .errors import IncompleteInput
    from .video import check_output, probe, transcode

    src, dst = Path(args.input), Path(args.output)
    info = probe(src)
    check_output(src, dst, args.codec)  # fail fast, before the models load
    enhancer = Enhancer.from_options(_enhancer_options(args), fps=float(info.fps) or 30.0,
                                     background_only=args.background_only, workers=args.parallel_frames)
    s = enhancer.scale
    out_w, out_h = info.width * s, info.height * s

    if args.side_by_side:
        def transform(frame: np.ndarray) -> np.ndarray:
            bicubic = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
            return np.hstack([bicubic, enhancer(frame)])

        out_size = (2 * out_w, out_h)
    else:
        transform, out_size = enhancer, (out_w, out_h)

    what = "bicubic only" if args.background_only else \
        f"{enhancer.model_name} x{s} on {enhancer.device}, {enhancer.resolver.precision}"
    try:
        with beside_codec_threads():
            stats = transcode(src, dst, transform, out_size, codec=args.codec, crf=args.crf, progress=not args.quiet,
                              desc=what)
    finally:
        enhancer.close()  # also waits for any frame still being rendered
    if stats["incomplete"]:
        raise IncompleteInput(f"{src}: {stats['incomplete']}; wrote {dst}", stats["frames"], stats["expected_frames"])
    print(f"{dst}: {stats['frames']} frames {info.width}x{info.height} -> {out_size[0]}x{out_size[1]} "
          f"in {stats['seconds']:.1f} s ({stats['fps']:.1f} fps, {what})", file=sys.stderr)


# --- facesr image ----------------------------------------------------------------------


def cmd_image(args: argparse.Namespace) -> None:
    from .images import enhance_files, plan_jobs

    jobs = plan_jobs(Path(args.input), Path(args.output))  # every input and output checked before any work
    if args.full_frame:
        from .runtime import model_name
        from .superres import SuperResolver, upscale_tiled
        from .weights import load_generator

        resolver = SuperResolver(load_generator(model_name(args.model, args.device, "photo"), args.scale),
                                 args.device, args.precision)
        enhance_files(jobs, lambda img: upscale_tiled(img, resolver, tile=args.tile))
    else:
        from .enhancer import Enhancer

        enhancer = Enhancer.from_options(_enhancer_options(args, use="photo"))
        try:
            enhance_files(jobs, enhancer, still=True)
        finally:
            enhancer.close()


# --- facesr stream ---------------------------------------------------------------------


def cmd_stream(args: argparse.Namespace) -> None:
    import logging

    from .enhancer import enhancer_factory
    from .stream.options import StreamOptions
    from .stream.run import run_stream

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="facesr stream: %(message)s")
    opts = StreamOptions(webrtc=args.webrtc, input=args.input, virtual_camera=args.virtual_camera, loop=args.loop,
                         host=args.host, port=args.port, max_peers=args.max_peers, max_offer_bytes=args.max_offer_bytes,
                         threads=args.threads, peer_timeout=args.peer_timeout,
                         bitrate=args.bitrate * 1000 if args.bitrate else None, ice_servers=tuple(args.ice_server),
                         scale=args.scale)
    make, device = enhancer_factory(_enhancer_options(args))
    run_stream(opts, make, device)


# --- facesr serve ----------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve.options import ServeOptions
    from .serve.run import run_serve

    run_serve(ServeOptions(host=args.host, port=args.port, model=args.model, max_upload_mb=args.max_upload_mb,
                           jobs=args.jobs, max_video_seconds=args.max_video_seconds, device=args.device,
                           precision=args.precision))


# --- facesr bench ----------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace) -> None:
    from .bench import SIZES, run_bench, write_report
    from .models import MODELS
    from .protocol import SCENES
    from .runtime import model_names
    from .weights import is_model_name

    models = model_names(args.model, args.device)
    sizes = [s for s in args.sizes.split(",") if s]
    scenes = [s for s in args.scenes.split(",") if s]
    checks = ((models, MODELS, is_model_name, "--model"), (sizes, SIZES, SIZES.__contains__, "--sizes"),
              (scenes, SCENES, SCENES.__contains__, "--scenes"))
    for value, known, is_known, what in checks:
        bad = [v for v in value if not is_known(v)]
        if bad or not value:
            raise UserError(f"{what} {','.join(bad) or '(empty)'}: choose from {', '.join(known)}")
    _check_report_paths(args.json, ("--plot", args.plot))
    videos = _data_arg(args.videos, "videos")
    if videos is None or not videos.is_dir():
        raise UserError(f"--videos {videos}: no such folder")
    report = run_bench(models, sizes=sizes, scenes=scenes, videos=videos, scale=args.scale, frames=args.frames,
                       repeat=args.repeat, device=args.device, precision=args.precision, workers=args.parallel_frames,
                       progress=not args.quiet)
    write_report(report, args.json, args.plot)


# --- facesr train ----------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from .models import MODELS
    from .train import train
    from .train.config import TrainConfig

    if args.model not in MODELS:
        raise UserError(f"--model {args.model}: choose one of {', '.join(MODELS)}")
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)})
    result = train(cfg)
    if result.suffix == ".safetensors":
        print(f"weights: {result}", file=sys.stderr)
    else:
        print(f"not finished: {result} holds the run; the same command resumes it", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import print_report, run_eval
    from .runtime import model_names

    models = model_names(args.model, args.device)
    _check_report_paths(args.json, ("--figure", args.figure))
    report = run_eval(models, _data_arg(args.faces, "faces/eval"), _data_arg(args.videos, "videos"), scale=args.scale,
                      crf=args.crf, max_frames=args.max_frames, device=args.device, precision=args.precision,
                      json_out=args.json, figure_out=args.figure, progress=not args.quiet)
    print_report(report)


def cmd_quantize(args: argparse.Namespace) -> None:
    from .train.quantize import build_int8
    from .weights import load_generator

    faces = _data_arg(args.faces, "faces/train")
    for model in args.model.split(","):
        generator = load_generator(model, args.scale)
        out = build_int8(generator, faces, args.out, count=args.count)
        print(f"{model}: int8 model written to {out}", file=sys.stderr)


def cmd_fetch_models(args: argparse.Namespace) -> None:
    from .weights import fetch_detector_models

    print(f"BlazeFace detector models verified in {fetch_detector_models()}", file=sys.stderr)


# --- entry point -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facesr", description="Real-time face super-resolution for video calls.",
                                     epilog="exit statuses: 0 done, 1 error, 2 bad command line, 3 internal error, "
                                            "4 incomplete input (cut off or damaged: the output holds what was decoded)")
    sub = parser.add_subparsers(dest="command", required=True)
    _video_parser(sub)
    _image_parser(sub)
    _stream_parser(sub)
    _serve_parser(sub)
    _bench_parser(sub)
    _eval_parser(sub)
    _train_parser(sub)
    _quantize_parser(sub)
    p = sub.add_parser("fetch-models", help="download and verify the BlazeFace detector models (done on first use anyway)")
    p.set_defaults(func=cmd_fetch_models)
    return parser


def _video_parser(sub) -> None:
    p = sub.add_parser("video", help="enhance every frame of a video file")
    p.add_argument("input", help="input video (anything PyAV/FFmpeg opens)")
    p.add_argument("output", help="output video: .mp4, .mkv, .mov or .webm")
    _add_model_args(p)
    _add_face_args(p)
    p.add_argument("--crf", type=int, default=None, help="encoder quality (lower is better; default 20 for x264, 32 for VP9)")
    p.add_argument("--codec", default=None, help="video encoder (default libx264; libvpx-vp9 for .webm)")
    p.add_argument("--side-by-side", action="store_true", help="bicubic on the left, facesr on the right")
    p.add_argument("--background-only", action="store_true", help="no face SR: the bicubic-only pipeline (the baseline)")
    _add_parallel_frames_arg(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)


def _image_parser(sub) -> None:
    p = sub.add_parser("image", help="enhance an image, or a folder of images")
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("output", help="an image file (.png, .jpg, ...) or, for a folder in, a folder (PNGs, same stems)")
    _add_model_args(p, use="photo")
    _add_face_args(p)
    p.add_argument("--full-frame", action="store_true", help="run the generator on the whole image, not only the faces")
    p.add_argument("--tile", type=_int_at_least(16), default=192, metavar="N",
                   help="with --full-frame: tile side in input pixels (default 192)")
    p.set_defaults(func=cmd_image)


def _stream_parser(sub) -> None:
    from .stream.options import StreamOptions

    d = StreamOptions()
    p = sub.add_parser("stream", help="real time: a WebRTC relay for browsers, and/or a local source to a virtual camera")
    p.add_argument("--webrtc", action="store_true",
                   help="serve the page and POST /offer: each peer's camera comes back enhanced (with --input: "
                        "browsers watch the enhanced source)")
    p.add_argument("--input", default=d.input, metavar="SRC",
                   help="a local source: a camera (/dev/video0), a file or a URL, anything PyAV opens")
    p.add_argument("--virtual-camera", nargs="?", const="", default=d.virtual_camera, metavar="DEVICE",
                   help="send the enhanced --input to a virtual camera (pyvirtualcam; v4l2loopback on Linux), "
                        "optionally this /dev/videoN")
    p.add_argument("--loop", action="store_true", help="with a file --input: play it again from the start at its end")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}; others get a warning)")
    p.add_argument("--port", type=_int_at_least(0), default=d.port,
                   help=f"port to listen on (default {d.port}; 0: any free port)")
    p.add_argument("--max-peers", type=_int_at_least(1), default=d.max_peers, metavar="N",
                   help=f"peers at once (default {d.max_peers}); more get 503")
    p.add_argument("--max-offer-bytes", type=_int_at_least(1024), default=d.max_offer_bytes, metavar="N",
                   help=f"largest offer body accepted (default {d.max_offer_bytes}); larger get 413")
    p.add_argument("--threads", type=_int_at_least(1), default=d.threads, metavar="N",
                   help=f"threads running Enhancers, shared by all peers (default {d.threads})")
    p.add_argument("--peer-timeout", type=_positive_float, default=d.peer_timeout, metavar="S",
                   help=f"close a peer whose camera sends nothing for S seconds (default {d.peer_timeout:g})")
    p.add_argument("--bitrate", type=_int_at_least(100), default=None, metavar="KBPS",
                   help="outgoing video bitrate (default: 0.08 bit per output pixel at 30 fps, 2.2 Mbps for 720p)")
    p.add_argument("--ice-server", action="append", default=[], metavar="URL",
                   help="a STUN server for peers behind NAT, e.g. stun:stun.example.org:3478 (default none: "
                        "host candidates only)")
    _add_model_args(p)
    _add_face_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log peers connecting and leaving")
    p.set_defaults(func=cmd_stream)


def _serve_parser(sub) -> None:
    from .serve.options import ServeOptions

    d = ServeOptions()
    p = sub.add_parser("serve", help="a web page (and HTTP API) where people upload a photo or a short video and get it back x4")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host}; others get a warning)")
    p.add_argument("--port", type=_int_at_least(0), default=d.port,
                   help=f"port to listen on (default {d.port}; 0: any free port)")
    p.add_argument("--model", default=d.model,
                   help="the page's default model: srresnet, srgan, lite, lite-gan (default: lite on CPU, srgan on CUDA), "
                        "or a .safetensors file, offered beside the shipped models")
    p.add_argument("--max-upload-mb", type=_positive_float, default=d.max_upload_mb, metavar="MB",
                   help=f"largest upload accepted (default {d.max_upload_mb:g}); larger get 413")
    p.add_argument("--jobs", type=_int_at_least(1), default=d.jobs, metavar="N",
                   help=f"jobs run at once, each in a worker thread (default {d.jobs}); the rest wait in order")
    p.add_argument("--max-video-seconds", type=_positive_float, default=d.max_video_seconds, metavar="S",
                   help=f"longest video accepted (default {d.max_video_seconds:g})")
    _add_device_args(p)
    p.set_defaults(func=cmd_serve)


def _bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="per-stage latency and fps of `facesr video` against bicubic-only, per size and scene")
    p.add_argument("--model", default=None, help="model(s), comma-separated (default: lite on CPU, srgan on CUDA)")
    p.add_argument("--sizes", default="320x180,160x90,480x270", help="LR call sizes, upscaled 4x (default all three)")
    p.add_argument("--scenes", default="none,one,several",
                   help="faces in the picture: none, one, several (four, a 2x2 gallery; default all)")
    p.add_argument("--videos", default=None, help="the clips scenes are made from (default: the data folder's videos)")
    _add_scale_arg(p)
    p.add_argument("--frames", type=_int_at_least(10), default=150, help="frames per clip (default 150, 5 s)")
    p.add_argument("--repeat", type=_int_at_least(1), default=2, help="runs of each, alternating with bicubic-only (default 2)")
    _add_device_args(p)
    _add_parallel_frames_arg(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="per-stage stacked bars and latency per frame over time")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per result")
    p.set_defaults(func=cmd_bench)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="measure face quality against bicubic on face photos and compressed call clips")
    p.add_argument("--faces", default=None,
                   help="folder of face photos, downscaled by the scale and restored "
                        "('' to skip; default: the data folder's faces/eval)")
    p.add_argument("--videos", default=None,
                   help="folder of clips, made into calls and enhanced ('' to skip; default: the data folder's videos)")
    p.add_argument("--model", default=None,
                   help="model(s) to score, comma-separated (e.g. lite,lite-gan,srresnet,srgan,srgan@0.5; default: lite on CPU, "
                        "srgan on CUDA)")
    _add_scale_arg(p)
    p.add_argument("--crf", type=int, default=28, help="H.264 CRF of the simulated calls (default 28)")
    p.add_argument("--max-frames", type=_int_at_least(2), default=150, metavar="N", help="frames per clip (default 150)")
    _add_device_args(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the full report as JSON")
    p.add_argument("--figure", default=None, metavar="OUT.png", help="write crops: LR | bicubic | models | original")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)


def _train_parser(sub) -> None:
    from .train.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a generator on a folder of face images (resumes from --out)")
    p.add_argument("--data", default=d.data, help="folder of HR face images (default: the data folder's faces/train)")
    p.add_argument("--eval-dir", default=d.eval_dir,
                   help="folder of evaluation faces ('' for none; default: the data folder's faces/eval)")
    p.add_argument("--model", default=d.model,
                   help=f"srresnet or lite (pixel loss), srgan or lite-gan (adversarial fine-tune of those), lite-photo, "
                        f"or lite-recurrent (recurrent, on sequences; default {d.model})")
    p.add_argument("--scale", type=int, default=d.scale, choices=(2, 4), help=f"upscaling factor to train (default {d.scale})")
    p.add_argument("--out", default=d.out, help="checkpoint folder (default <cache>/train/MODEL-xSCALE, cache ~/.cache/facesr)")
    p.add_argument("--steps", type=_int_at_least(1), default=d.steps, help=f"(default {d.steps})")
    p.add_argument("--batch", type=_int_at_least(1), default=d.batch, help=f"patches per step (default {d.batch})")
    p.add_argument("--patch", type=_int_at_least(16), default=d.patch, help=f"HR patch side (default {d.patch})")
    p.add_argument("--lr", type=_positive_float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument("--eval-every", type=_int_at_least(1), default=d.eval_every, metavar="STEPS", help=f"(default {d.eval_every})")
    p.add_argument("--threads", type=_int_at_least(0), default=d.threads, help="torch threads (default 0: torch's choice)")
    p.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"),
                   help="where to train (default auto: CUDA where there is one, with bfloat16 autocast)")
    p.add_argument("--batches", default=d.batches, choices=("auto", "numpy", "tensor"),
                   help="numpy: each sample made on the CPU; tensor: whole batches made on the device from images "
                        "held there, JPEG and H.264 from a bank built once (default auto: tensor on CUDA)")
    p.add_argument("--bank-variants", type=_int_at_least(1), default=d.bank_variants, metavar="N",
                   help=f"tensor batches: JPEG and H.264 LRs per image in the bank (default {d.bank_variants})")
    p.add_argument("--bank-workers", type=_int_at_least(0), default=d.bank_workers, metavar="N",
                   help="processes building the bank (default 0: one per CPU)")
    p.add_argument("--time-budget", dest="time_budget_min", type=_number_at_least(0.0), default=d.time_budget_min, metavar="MIN",
                   help="total training time across resumes: the LR schedule ends there (default: by --steps)")
    p.add_argument("--time-limit", dest="time_limit_min", type=_number_at_least(0.0), default=d.time_limit_min, metavar="MIN",
                   help="stop this run (checkpointed) after MIN minutes (default 0: no limit)")
    p.add_argument("--degradations", default=d.degradations, choices=("call", "photo", "clean"),
                   help="call: blur, noise, JPEG and H.264 (default); photo: half clean, half JPEG; "
                        "clean: area downscaling only")
    p.add_argument("--contrast", type=_number_pair, default=d.contrast, metavar="LOW,HIGH",
                   help="stretch each HR patch's contrast by a random gain in this range (default 1,1: off)")
    p.add_argument("--detail", type=_number_pair, default=d.detail, metavar="LOW,HIGH",
                   help="multiply each HR patch's detail above the LR's Nyquist by a random gain in this range "
                        "(default 1,1: off)")
    p.add_argument("--photos", type=_int_at_least(0), default=d.photos, metavar="N",
                   help="also train on N crops of the real photos scikit-image ships (a cat, coffee, a rocket, "
                        "a motorcycle): real-camera texture the synthetic faces lack (default 0)")
    r = p.add_argument_group("recurrent models (lite-recurrent)")
    r.add_argument("--frames", type=_int_at_least(2), default=d.frames,
                   help=f"frames per training run, backpropagated through time (default {d.frames})")
    r.add_argument("--clips", default=d.clips,
                   help="folder of talking-head training clips (default: the data folder's videos_train)")
    r.add_argument("--sequence-stills", type=_int_at_least(0), default=d.sequence_stills, metavar="N",
                   help=f"still faces from --data set in motion as sequences beside the clips (default {d.sequence_stills})")
    r.add_argument("--temporal-weight", type=_number_at_least(0.0), default=d.temporal_weight,
                   help="weight of a loss on the output's frame-to-frame change against the original's "
                        f"(flicker; default {d.temporal_weight:g})")
    p.add_argument("--ema", type=float, default=d.ema, metavar="DECAY",
                   help="evaluate and export a moving average of the generator's weights with this decay "
                        "(default 0.999 for srgan and lite-gan, 0 (off) for the pixel models)")
    g = p.add_argument_group("adversarial fine-tuning (srgan, lite-gan)")
    g.add_argument("--init", default=d.init,
                   help="weights to start from (GAN models: default the shipped srresnet/lite; pixel models: default random)")
    g.add_argument("--d-warmup", type=_int_at_least(0), default=d.d_warmup, metavar="STEPS",
                   help="train the fresh discriminator alone this many steps first (for --init from a GAN model; default 0)")
    g.add_argument("--gan-loss", default=d.gan_loss, choices=("ragan", "hinge"))
    g.add_argument("--adv-weight", type=_number_at_least(0.0), default=d.adv_weight,
                   help="weight of the adversarial loss (default 1e-3, the paper's, with --vgg-weights; else 1e-2)")
    g.add_argument("--pixel-weight", type=_number_at_least(0.0), default=d.pixel_weight,
                   help=f"weight of the L1 content loss (default {d.pixel_weight:g})")
    g.add_argument("--fm-weight", type=_number_at_least(0.0), default=d.fm_weight,
                   help=f"weight of the feature-matching content loss (default {d.fm_weight:g})")
    g.add_argument("--energy-weight", type=_number_at_least(0.0), default=d.energy_weight,
                   help="weight of the local detail-energy content loss: how strong the detail above the LR's "
                        "Nyquist is, not where it lies (default 0: off)")
    g.add_argument("--vgg-weights", default=d.vgg_weights, metavar="FILE",
                   help="torchvision vgg19 state dict: use the paper's VGG54 content loss instead of L1 + feature matching")
    p.set_defaults(func=cmd_train)


def _quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help="build a model's int8 twin (ONNX Runtime), the fast CPU path, beside its weights")
    p.add_argument("--model", default="lite",
                   help="srresnet, srgan, lite, lite-gan or a .safetensors file, or several comma-separated (default lite)")
    _add_scale_arg(p)
    p.add_argument("--faces", default=None,
                   help="face images to calibrate the activation ranges on (default: the data folder's faces/train)")
    p.add_argument("--count", type=_int_at_least(1), default=128, metavar="N", help="faces to calibrate on (default 128)")
    p.add_argument("--out", default=None, help="output file (default: beside the weights, NAME-xS.int8.onnx)")
    p.set_defaults(func=cmd_quantize)


def main(argv: list[str] | None = None) -> int:
    from .errors import EXIT_ERROR, EXIT_INCOMPLETE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, IncompleteInput

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except IncompleteInput as exc:
        print(f"facesr: incomplete input: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except UserError as exc:
        print(f"facesr: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("facesr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on request
        if os.environ.get("FACESR_DEBUG"):
            raise
        print(f"facesr: internal error: {type(exc).__name__}: {exc} (set FACESR_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
