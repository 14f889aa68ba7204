"""`facesr eval`: how much better faces look than bicubic, on face photos and on compressed calls.

Faces: each evaluation photo is area-downscaled by the scale, super-resolved by the
generator alone and compared with the original: PSNR, SSIM, high-frequency energy ratio
(detail above the LR Nyquist frequency relative to the original's; bicubic is far below 1,
over-sharpened output above) and landmark agreement (BlazeFace's six keypoints found on the
output against those on the original, in inter-ocular distances) and identity distance (dlib's
face embeddings of output and original, facesr/identity.py, where that optional dependency is
installed), each beside bicubic's.

Videos: each talking clip is made into a call (area-downscaled, H.264 at CRF 28, cached),
then run through the full `Enhancer` (detect, track, SR, blend) and through the bicubic-only
pipeline. Both are compared with the original in the face region (BlazeFace on the
original frame): PSNR, flicker (how far the frame-to-frame change departs from the
original's) and, on every 15th face frame, the identity distance.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .detect import FaceDetector
from .enhancer import Enhancer
from .errors import UserError
from .identity import IdentityEmbedder, identity_distances, why_unavailable
from .images import list_images, write_rgb
from .metrics import flicker, hf_energy_ratio, landmark_error, psnr, ssim
from .protocol import call_clip, eval_pairs
from .runtime import describe_precisions, plan, resolve_device
from .superres import SuperResolver, bicubic_upscale
from .video import probe, read_frames
from .weights import load_generator

BICUBIC = "bicubic"


# --- face photos -------------------------------------------------------------------------


def eval_faces(models: list[str], folder: str | os.PathLike, scale: int, device: str = "auto",
               precision: str = "auto", progress: bool = True, identity: IdentityEmbedder | None = None) -> dict:
    """Scores of bicubic and each model on the face photos in `folder`; also the images, for the figure."""
    pairs = eval_pairs(folder, scale)
    lrs, hrs = [lr for lr, _ in pairs], [hr for _, hr in pairs]
    outputs = {BICUBIC: [bicubic_upscale(lr, scale) for lr in lrs]}
    for name in tqdm(models, desc="faces", disable=not progress, leave=False):
        resolver = SuperResolver(load_generator(name, scale), device, precision)
        outputs[name] = [out for i in range(0, len(lrs), 8) for out in resolver(lrs[i : i + 8])]

    with FaceDetector("short") as detector:  # the close-range model: these faces fill the frame
        def keypoints(img: np.ndarray) -> np.ndarray | None:
            found = detector(img)
            return max(found, key=lambda d: d.score).keypoints if found else None

        truth = [keypoints(hr) for hr in hrs]
        scores = {}
        for name, outs in outputs.items():
            errors, found = [], 0
            for out, true_kps in zip(outs, truth):
                if true_kps is None:
                    continue
                kps = keypoints(out)
                if kps is not None:
                    found += 1
                    errors.append(landmark_error(kps, true_kps))
            scores[name] = {
                "psnr": float(np.mean([psnr(o, h) for o, h in zip(outs, hrs)])),
                "ssim": float(np.mean([ssim(o, h) for o, h in zip(outs, hrs)])),
                "hf_ratio": hf_energy_ratio(outs, hrs, scale),
                "landmark_error": float(np.mean(errors)) if errors else None,
                "faces_found": found / max(1, sum(t is not None for t in truth)),
            }
            if identity is not None:
                scores[name]["identity"] = float(np.mean(identity_distances(outs, hrs, identity)))
    return {"folder": str(folder), "count": len(pairs), "scale": scale, "scores": scores,
            "_images": {"lr": lrs, "original": hrs, **outputs}}


# --- compressed calls ----------------------------------------------------------------------


def _face_box(detector: FaceDetector, frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest face of the original frame, a little enlarged, clipped to the frame."""
    found = detector(frame)
    if not found:
        return None
    x0, y0, x1, y1 = max(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box
    pad = 0.1 * (x1 - x0)
    h, w = frame.shape[:2]
    box = (max(0, int(x0 - pad)), max(0, int(y0 - pad)), min(w, int(x1 + pad)), min(h, int(y1 + pad)))
    return box if box[2] - box[0] >= 8 and box[3] - box[1] >= 8 else None


IDENTITY_EVERY = 15  # calls: the identity distance is measured on every 15th frame with a face
# Spans of a clip's face frames, for the gain along it: the first frame (no history for any model)
# and later ones, up to the steady state.
SPANS = {"first": (0, 1), "2-5": (1, 5), "6-15": (5, 15), "16-30": (15, 30), "steady": (30, None)}


def _db(values: list[float]) -> float:
    """PSNR of a mean squared error."""
    return float(10 * np.log10(255.0**2 / max(np.mean(values), 1e-10)))


def eval_clip(src: Path, models: list[str], scale: int, crf: int, max_frames: int, device: str,
              precision: str, detector: FaceDetector, identity: IdentityEmbedder | None = None,
              history: str = "aligned") -> dict:
    """Face-region PSNR and flicker of bicubic-only and each model's Enhancer on one call clip.
    `history`: how a recurrent model's history is carried (Enhancer: "aligned", or "crop" and
    "off" for measurements)."""
    lr_path = call_clip(src, scale, crf)
    fps = float(probe(src).fps or 25)
    pipelines = {BICUBIC: Enhancer(scale=scale, background_only=True)}
    for name in models:
        pipelines[name] = Enhancer(name, scale, device=device, precision=precision, fps=fps, history=history)
    mse = {k: [] for k in pipelines}
    flick = {k: [] for k in pipelines}
    prev_ref, prev_out, frames, faces = None, {}, 0, 0
    example = None
    same = {k: [] for k in pipelines}  # identity distances
    for ref, lr in zip(read_frames(src, max_frames), read_frames(lr_path, max_frames)):
        size = (lr.shape[1] * scale, lr.shape[0] * scale)
        if (ref.shape[1], ref.shape[0]) != size:  # the call's sides were rounded down to even
            ref = cv2.resize(ref, size, interpolation=cv2.INTER_AREA)
        outs = {k: p(lr) for k, p in pipelines.items()}
        frames += 1
        box = _face_box(detector, ref)
        if box is not None:
            faces += 1
            x0, y0, x1, y1 = box
            region = np.s_[y0:y1, x0:x1]
            for k, out in outs.items():
                mse[k].append(np.mean((out[region].astype(np.float64) - ref[region]) ** 2))
                if prev_ref is not None:
                    flick[k].append(flicker(prev_out[k][region], out[region], prev_ref[region], ref[region]))
            if identity is not None and faces % IDENTITY_EVERY == 1:
                box = identity.face_box(ref[region])
                truth = identity(ref[region], box)
                for k, out in outs.items():
                    same[k].append(float(np.linalg.norm(identity(out[region], box) - truth)))
            if example is None and frames >= 10:  # a frame for the figure, past the tracker's start
                ls = np.s_[y0 // scale : y1 // scale, x0 // scale : x1 // scale]
                example = {"lr": lr[ls], "original": ref[region], **{k: o[region] for k, o in outs.items()}}
        prev_ref, prev_out = (ref, outs) if box is not None else (None, {})
    for p in pipelines.values():
        p.close()
    remembered = {k: p.history_counts["remembered"] / max(1, p.history_counts["faces"])
                  for k, p in pipelines.items() if p.resolver is not None and p.resolver.recurrent}
    if not faces:
        return {"clip": src.name, "frames": frames, "face_frames": 0}

    result = {"clip": src.name, "frames": frames, "face_frames": faces,
              "psnr": {k: _db(v) for k, v in mse.items()},
              "flicker": {k: float(np.mean(v)) if v else None for k, v in flick.items()}}
    result["gain"] = {k: result["psnr"][k] - result["psnr"][BICUBIC] for k in models}
    # along the clip: the gain over bicubic in the face frames of each span (the first has no history)
    result["gain_along"] = {k: {span: _db(mse[k][a:b]) - _db(mse[BICUBIC][a:b]) for span, (a, b) in SPANS.items()
                                if len(mse[k]) > a} for k in models}
    if remembered:
        result["remembered"] = remembered
    if identity is not None:
        result["identity"] = {k: float(np.mean(v)) for k, v in same.items()}
    result["_example"] = example
    return result


def eval_videos(models: list[str], folder: str | os.PathLike, scale: int, crf: int = 28, max_frames: int = 150,
                device: str = "auto", precision: str = "auto", progress: bool = True,
                identity: IdentityEmbedder | None = None, history: str = "aligned") -> dict:
    clips = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in (".mp4", ".mkv", ".mov", ".webm"))
    if not clips:
        raise UserError(f"{folder}: no video clips found")
    results = []
    with FaceDetector("full") as detector:
        for clip in tqdm(clips, desc="videos", disable=not progress, leave=False):
            results.append(eval_clip(clip, models, scale, crf, max_frames, device, precision, detector, identity,
                                     history))
    scored = [r for r in results if r.get("face_frames")]
    summary = {}
    for k in [BICUBIC, *models]:
        summary[k] = {
            "face_psnr": float(np.mean([r["psnr"][k] for r in scored])),
            "flicker": float(np.mean([r["flicker"][k] for r in scored if r["flicker"][k] is not None])),
        }
        if identity is not None:
            summary[k]["identity"] = float(np.mean([r["identity"][k] for r in scored if "identity" in r]))
        if k != BICUBIC:
            summary[k]["gain"] = float(np.mean([r["gain"][k] for r in scored]))
            summary[k]["clips_better"] = sum(r["gain"][k] > 0 for r in scored)
            summary[k]["gain_along"] = {span: float(np.mean([r["gain_along"][k][span] for r in scored
                                                             if span in r["gain_along"][k]]))
                                        for span in SPANS if any(span in r["gain_along"][k] for r in scored)}
            if any(k in r.get("remembered", {}) for r in scored):
                summary[k]["remembered"] = float(np.mean([r["remembered"][k] for r in scored if k in r.get("remembered", {})]))
    return {"folder": str(folder), "scale": scale, "crf": crf, "max_frames": max_frames, "clips": results,
            "summary": summary}


# --- report ---------------------------------------------------------------------------------


def _tile(img: np.ndarray, side: int) -> np.ndarray:
    interp = cv2.INTER_NEAREST if img.shape[0] < side // 2 else cv2.INTER_AREA
    h, w = img.shape[:2]
    f = side / max(h, w)
    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)
    canvas = np.full((side, side, 3), 24, np.uint8)
    y, x = (side - img.shape[0]) // 2, (side - img.shape[1]) // 2
    canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
    return canvas


def label(name: str) -> str:
    """A model's short name: a weights file by its stem."""
    return Path(name).stem if name.endswith(".safetensors") else name


def figure(rows: list[dict[str, np.ndarray]], columns: list[str], side: int = 192) -> np.ndarray:
    """A grid of crops, one row per face, columns LR | bicubic | models... | original, labelled."""
    head = 28
    grid = np.full((head + side * len(rows), side * len(columns), 3), 255, np.uint8)
    for c, name in enumerate(columns):
        cv2.putText(grid, label(name), (c * side + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for r, row in enumerate(rows):
            grid[head + r * side : head + (r + 1) * side, c * side : (c + 1) * side] = _tile(row[name], side)
    return grid


def run_eval(models: list[str], faces: str | None, videos: str | None, scale: int = 4, crf: int = 28,
             max_frames: int = 150, device: str = "auto", precision: str = "auto", json_out: str | None = None,
             figure_out: str | None = None, progress: bool = True, identity: bool | None = None) -> dict:
    """`facesr eval`. `identity`: measure the identity distance (facesr/identity.py); None: where
    its optional dependency is installed."""
    if not faces and not videos:
        raise UserError("nothing to evaluate: give --faces and/or --videos")
    for folder in (faces, videos):
        if folder and not Path(folder).is_dir():
            raise UserError(f"{folder}: no such folder")
    dev = resolve_device(device)
    # a missing model (or int8 file asked for) fails here, before any long work
    chosen = {name: plan(load_generator(name, scale), dev, precision).precision for name in models}
    report: dict = {"models": models, "scale": scale, "device": str(dev), "precision": describe_precisions(chosen)}
    if identity is None:
        identity = why_unavailable() is None
        if not identity:
            report["identity"] = f"not measured: {why_unavailable()}"
    embedder = IdentityEmbedder() if identity else None
    rows: list[dict[str, np.ndarray]] = []
    if faces:
        if not list_images(faces):
            raise UserError(f"{faces}: no images found")
        result = eval_faces(models, faces, scale, device, precision, progress, embedder)
        images = result.pop("_images")
        report["faces"] = result
        n = len(images["lr"])
        rows += [{k: v[i] for k, v in images.items()} for i in sorted({0, n // 3, 2 * n // 3, n - 1})]
    if videos:
        result = eval_videos(models, videos, scale, crf, max_frames, device, precision, progress, embedder)
        examples = [c.pop("_example", None) for c in result["clips"]]
        rows += [e for e in examples if e is not None][:4]
        report["videos"] = result
    if json_out:
        tmp = Path(json_out).with_name(f".{Path(json_out).name}.part")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, json_out)
    if figure_out and rows:
        write_rgb(figure_out, figure(rows, ["lr", BICUBIC, *models, "original"]))
    return report


def format_report(report: dict) -> str:
    """The tables `facesr eval` prints."""
    lines = [f"models run on {report.get('device', 'cpu')} in {report.get('precision', 'float32')}"]
    if "faces" in report:
        f = report["faces"]
        lines += [f"faces: {f['count']} photos in {f['folder']}, x{f['scale']} (LR by area downscaling)",
                  f"{'':14} {'PSNR':>7} {'gain':>6} {'SSIM':>6} {'detail':>7} {'landmarks':>10} {'found':>6} {'identity':>9}"]
        base = f["scores"][BICUBIC]["psnr"]
        for name, s in f["scores"].items():
            lm = "-" if s["landmark_error"] is None else f"{s['landmark_error']:.4f}"
            lines.append(f"{label(name):14} {s['psnr']:7.2f} {s['psnr'] - base:+6.2f} {s['ssim']:6.4f} {s['hf_ratio']:7.2f} "
                         f"{lm:>10} {s['faces_found']:6.0%} {_identity(s):>9}")
    if "videos" in report:
        v = report["videos"]
        n = sum(1 for c in v["clips"] if c.get("face_frames"))
        lines += ["", f"videos: {n} call clips in {v['folder']}, x{v['scale']}, H.264 CRF {v['crf']}, "
                      f"first {v['max_frames']} frames",
                  f"{'':14} {'face PSNR':>9} {'gain':>6} {'flicker':>8} {'clips better':>13} {'identity':>9}"]
        for name, s in v["summary"].items():
            gain = f"{s['gain']:+6.2f}" if "gain" in s else f"{'':6}"
            better = f"{s['clips_better']}/{n}" if "clips_better" in s else ""
            lines.append(f"{label(name):14} {s['face_psnr']:9.2f} {gain} {s['flicker']:8.3f} {better:>13} {_identity(s):>9}")
        along = [(name, s) for name, s in v["summary"].items() if "gain_along" in s]
        if along:
            spans = list(along[0][1]["gain_along"])
            lines += ["", "gain along the clips, by face frame (the first has no history):",
                      f"{'':14} " + " ".join(f"{sp:>7}" for sp in spans) + f" {'history':>8}"]
            for name, s in along:
                kept = f"{s['remembered']:8.0%}" if "remembered" in s else f"{'-':>8}"
                lines.append(f"{label(name):14} " + " ".join(f"{s['gain_along'].get(sp, float('nan')):+7.2f}" for sp in spans)
                             + f" {kept}")
    if "identity" in report:
        lines += ["", f"identity {report['identity']}"]
    else:
        lines += ["", "identity: distance of dlib's face embeddings from the original's (lower is closer; 0.6: another person)"]
    return "\n".join(lines)


def _identity(scores: dict) -> str:
    return f"{scores['identity']:.3f}" if "identity" in scores else "-"


def print_report(report: dict) -> None:
    print(format_report(report), file=sys.stdout)
