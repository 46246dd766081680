"""The pipeline stages: plain callables over column batches, shared by Ray Data and Ray Serve.

Every stage takes and returns ``dict[str, np.ndarray]`` with one entry per row. Rows whose
``status`` is already ``error`` pass through untouched, so a bad input never stops a batch and
is never dropped. A stage that fails on one row marks that row (kind ``internal``) instead of
raising.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from scipy.special import expit
from skimage.filters import threshold_otsu

from tamperscan.config import PipelineConfig, S3Options, model_path
from tamperscan.copy_move import detect_copy_move
from tamperscan.engines import build_engine
from tamperscan.io import SourceError, read_bytes
from tamperscan.nets.build import build_model, load_config, load_weights
from tamperscan.preprocess.decode import DecodeLimits, ImageError, decode_image
from tamperscan.preprocess.inputs import model_inputs
from tamperscan.refine.cam import fuse_geometric, normalize_cams
from tamperscan.refine.fusion import refine_cam
from tamperscan.refine.segmenters import build_segmenter
from tamperscan.score_model import ImageScoreModel, load_score_model, map_score

Batch = dict[str, np.ndarray]


def _n(batch: Batch) -> int:
    return len(batch["uri"])


def _ok(batch: Batch) -> np.ndarray:
    return np.asarray(batch["status"]) == "ok"


def _mark_error(batch: Batch, i: int, kind: str, message: str) -> None:
    batch["status"][i] = "error"
    batch["error"][i] = f"{kind}: {message}"


def bytes_batch(data: list[bytes], uris: list[str] | None = None) -> Batch:
    """Encoded images as ReadBytes hands them on: the in-process entry to the graph."""
    n = len(data)
    return {"uri": np.array(uris or [f"image-{i}" for i in range(n)], dtype=object),
            "data": np.array(data, dtype=object), "status": np.array(["ok"] * n, dtype=object),
            "error": np.array([""] * n, dtype=object)}


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=object)


@cache
def weights_version(path: str) -> str:
    """Short content hash: results record exactly which weights produced them."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return digest[:12]


def model_versions(config: PipelineConfig) -> str:
    parts = []
    for name, weights in ((config.two_stream_config, config.two_stream_weights),
                          (config.wcbnet_config, config.wcbnet_weights)):
        parts.append(f"{name}@{weights_version(str(model_path(weights)))}")
    return ";".join(parts)


def input_sizes(config: PipelineConfig) -> tuple[int, int]:
    """(two-stream input size, WCBnet input size) from the model configs."""
    return (int(load_config(config.two_stream_config)["input_size"]),
            int(load_config(config.wcbnet_config)["input_size"]))


class ReadBytes:
    """uri -> original bytes (ELA needs the real file, never a re-encode)."""

    def __init__(self, config: PipelineConfig, s3: S3Options | None = None) -> None:
        self.max_bytes = config.max_image_bytes
        self.s3 = s3

    def __call__(self, batch: Batch) -> Batch:
        uris = list(batch["uri"])
        data, status, error = [], [], []
        for uri in uris:
            try:
                data.append(read_bytes(uri, self.max_bytes, self.s3))
                status.append("ok")
                error.append("")
            except SourceError as exc:
                data.append(b"")
                status.append("error")
                error.append(f"{exc.kind}: {exc}")
        return {"uri": _strings(uris), "data": np.array(data, dtype=object),
                "status": _strings(status), "error": _strings(error)}


class DecodeELA:
    """bytes -> model inputs: RGB and absolute ELA at the localizer size, signed ELA at the
    WCBnet size (ELA at the original resolution, then resized), and the training-free
    copy-move evidence on the localizer-size RGB (CPU work on the same pixels, so it runs
    here and every layout, the endpoint and the evaluation get it alike)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.quality = config.ela_quality
        self.limits = DecodeLimits(max_bytes=config.max_image_bytes,
                                   max_pixels=config.max_image_pixels)
        self.ts_size, self.cb_size = input_sizes(config)
        self.copy_move = config.copy_move

    def __call__(self, batch: Batch) -> Batch:
        n = _n(batch)
        status = _strings(list(batch.get("status", ["ok"] * n)))
        error = _strings(list(batch.get("error", [""] * n)))
        out = {
            "uri": _strings(list(batch["uri"])), "status": status, "error": error,
            "width": np.zeros(n, np.int32), "height": np.zeros(n, np.int32),
            "rgb": np.zeros((n, self.ts_size, self.ts_size, 3), np.uint8),
            "ela": np.zeros((n, self.ts_size, self.ts_size, 3), np.float16),
            "sela": np.zeros((n, self.cb_size, self.cb_size, 3), np.float16),
            "cm_map": np.zeros((n, self.ts_size, self.ts_size), np.float16),
            "score_copy_move": np.zeros(n, np.float32),
            "t_decode": np.zeros(n, np.float32), "t_copy_move": np.zeros(n, np.float32),
        }
        for i in range(n):
            if status[i] != "ok":
                continue
            start = time.perf_counter()
            try:
                image = decode_image(bytes(batch["data"][i]), self.limits)
                out["width"][i], out["height"][i] = image.width, image.height
                inputs = model_inputs(image.rgb, self.quality, self.ts_size, self.cb_size)
                out["rgb"][i], out["ela"][i], out["sela"][i] = inputs.rgb, inputs.ela, inputs.sela
            except ImageError as exc:
                _mark_error(out, i, exc.code, str(exc))
            except Exception as exc:  # a decoder bug must not take the batch down
                _mark_error(out, i, "internal", f"{type(exc).__name__}: {exc}")
            middle = time.perf_counter()
            out["t_decode"][i] = middle - start
            if status[i] == "ok" and self.copy_move.enabled:
                try:
                    found = detect_copy_move(out["rgb"][i], self.copy_move)
                    out["cm_map"][i], out["score_copy_move"][i] = found.region, found.confidence
                except Exception as exc:
                    _mark_error(out, i, "internal",
                                f"copy-move detection failed: {type(exc).__name__}: {exc}")
                out["t_copy_move"][i] = time.perf_counter() - middle
        return out


class _NetStage:
    """Loads one net from config + weights into an inference engine; runs it on the ``ok``
    rows of a batch."""

    config_attr: str
    weights_attr: str

    def __init__(self, config: PipelineConfig) -> None:
        net_config = load_config(getattr(config, self.config_attr))
        weights = model_path(getattr(config, self.weights_attr))
        if not weights.exists():
            raise FileNotFoundError(f"weights not found: {weights} (see models/MODEL_CARD.md)")
        model = build_model(net_config).eval()
        load_weights(model, weights)
        self.engine = build_engine(model, config.backend, precision=config.precision,
                                   cache_dir=config.engine_cache_dir,
                                   threads=config.torch_threads or None)
        self.engine.warm_up()
        self.size = int(net_config["input_size"])

    def _run(self, batch: Batch, outputs: Batch, compute: Callable[[np.ndarray], Batch],
             timing: str) -> Batch:
        n = _n(batch)
        rows = np.flatnonzero(_ok(batch))
        out = {**batch, **outputs, timing: np.zeros(n, np.float32)}
        out["status"] = _strings(list(batch["status"]))
        out["error"] = _strings(list(batch["error"]))
        if rows.size:
            start = time.perf_counter()
            try:
                results = compute(rows)
                for key, value in results.items():
                    out[key][rows] = value
            except Exception as exc:  # e.g. out of memory: fail these rows, keep the job
                for i in rows:
                    _mark_error(out, i, "internal", f"{type(exc).__name__}: {exc}")
            out[timing][rows] = (time.perf_counter() - start) / rows.size
        return out


def _nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32)


class Localize(_NetStage):
    """Two-stream localizer: per-pixel tamper probability at the model size + image score.
    With ``localizer_flip`` the logits are the mean of the image's and its mirror's (mirrored
    back): the net was never trained on flips, so the two passes err differently."""

    config_attr, weights_attr = "two_stream_config", "two_stream_weights"

    def __init__(self, config: PipelineConfig) -> None:
        super().__init__(config)
        self.flip = config.localizer_flip

    def __call__(self, batch: Batch) -> Batch:
        n, s = _n(batch), self.size

        def compute(rows: np.ndarray) -> Batch:
            inputs = {"rgb": _nchw(batch["rgb"][rows]) / 255.0, "ela": _nchw(batch["ela"][rows])}
            logits = self.engine(inputs)["logits"]
            if self.flip:
                mirrored = self.engine({k: v[..., ::-1].copy() for k, v in inputs.items()})
                logits = (logits + mirrored["logits"][..., ::-1]) / 2
            prob = expit(logits[:, 0])
            return {"ts_map": prob.astype(np.float16),
                    "score_two_stream": np.array([map_score(p) for p in prob], np.float32)}

        outputs = {"ts_map": np.zeros((n, s, s), np.float16),
                   "score_two_stream": np.zeros(n, np.float32)}
        return self._run(batch, outputs, compute, "t_localize")


class Detect(_NetStage):
    """WCBnet: p(manipulated) from three cross-block heads and their fused, normalised CAM."""

    config_attr, weights_attr = "wcbnet_config", "wcbnet_weights"

    def __call__(self, batch: Batch) -> Batch:
        n, c = _n(batch), self.size // 4

        def compute(rows: np.ndarray) -> Batch:
            out = self.engine({"signed_ela": _nchw(batch["sela"][rows])})
            heads = expit(out["logits"])
            views = normalize_cams(out["cams"])
            return {"score_wcbnet_heads": heads.astype(np.float32),
                    "score_wcbnet": heads.mean(axis=1).astype(np.float32),
                    "cam_views": views.astype(np.float16),
                    "cam": fuse_geometric(views).astype(np.float16)}

        outputs = {"score_wcbnet_heads": np.zeros((n, 3), np.float32),
                   "score_wcbnet": np.zeros(n, np.float32),
                   "cam_views": np.zeros((n, 3, c, c), np.float16),
                   "cam": np.zeros((n, c, c), np.float16)}
        return self._run(batch, outputs, compute, "t_detect")


def score_model(config: PipelineConfig) -> ImageScoreModel | None:
    """The configured image score model (loaded once), or None for the fixed mean rule."""
    if not config.image_score_model:
        return None
    return load_score_model(str(model_path(config.image_score_model)), model_versions(config))


def nets_score(batch: Batch, model: ImageScoreModel | None = None) -> np.ndarray:
    """The nets' part of the image score: ``model``'s probability, or without one the mean
    of the localizer's and WCBnet's scores."""
    if model is not None:
        return model.probability(batch)
    return (batch["score_two_stream"] + batch["score_wcbnet"]) / 2


def noisy_or(a, b):
    """1 - (1 - a)(1 - b): either piece of evidence alone can make the score high."""
    return 1 - (1 - a) * (1 - b)


def image_score(batch: Batch, config: PipelineConfig) -> np.ndarray:
    """Final image score: the nets' probability -- the configured logistic model's
    (`score_model`) or, without one, the mean of the localizer's and WCBnet's scores --
    combined with the copy-move confidence by noisy-OR, 1 - (1 - nets)(1 - copy_move): either
    kind of evidence can flag an image, and a verified clone (confidence >= 0.5 =
    ``tamper_threshold``'s default, 0 without one) always lifts an image above every image
    with the same net score and none. On both synthetic validation splits noisy-OR ranks
    images better than taking the larger of the two (image AUC 0.688 vs 0.670, 0.670 vs
    0.655; MODEL_CARD.md)."""
    nets = nets_score(batch, score_model(config))
    if "score_copy_move" in batch:
        nets = noisy_or(nets, batch["score_copy_move"])
    return nets.astype(np.float32)


def refine_heatmap(segmenter, rgb: np.ndarray, cam: np.ndarray, size: int) -> np.ndarray:
    """Segment-and-fuse at ``size`` x ``size`` (the segmenter dominates the cost, so it runs
    at a reduced resolution); returns the refined heatmap at the resolution of ``rgb``."""
    return refine_at(segmenter, rgb, cam, size)[0]


def refine_at(segmenter, rgb: np.ndarray, cam: np.ndarray,
              size: int) -> tuple[np.ndarray, np.ndarray]:
    """(refined heatmap, chosen region mask), both at the resolution of ``rgb``."""
    work_rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    work_cam = cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    result = refine_cam(work_cam, segmenter.segment(work_rgb, work_cam))
    shape = rgb.shape[1::-1]
    region = cv2.resize(result.region_mask.astype(np.uint8), shape,
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(result.heatmap, shape, interpolation=cv2.INTER_LINEAR), region


class Refine:
    """Segment-and-fuse for rows whose score reaches the cascade threshold; others pass
    through at near-zero cost. (Ray Data cannot fan a stream out to two branches without
    re-running or materialising the upstream, so the cascade lives inside the stage.)"""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        # With cam_weight 0 the refined map cannot change the output: skip the work.
        self.threshold = config.refine_threshold if config.cam_weight > 0 else np.inf
        self.size = config.refine_size
        self.segmenter = build_segmenter(config.segmenter, **config.segmenter_options)

    def __call__(self, batch: Batch) -> Batch:
        n, s = _n(batch), batch["rgb"].shape[1]
        out = {**batch, "status": _strings(list(batch["status"])),
               "error": _strings(list(batch["error"])), "refined": np.zeros((n, s, s), np.float16),
               "was_refined": np.zeros(n, bool), "t_refine": np.zeros(n, np.float32)}
        if np.isinf(self.threshold):  # refinement off: nothing to score or refine
            return out
        scores = image_score(batch, self.config)
        for i in np.flatnonzero(_ok(batch) & (scores >= self.threshold)):
            start = time.perf_counter()
            try:
                out["refined"][i] = refine_heatmap(self.segmenter, batch["rgb"][i],
                                                   batch["cam"][i], self.size)
                out["was_refined"][i] = True
            except Exception as exc:
                _mark_error(out, i, "internal", f"refinement failed: {type(exc).__name__}: {exc}")
            out["t_refine"][i] = time.perf_counter() - start
        return out


def final_map(ts_map: np.ndarray, refined: np.ndarray | None, was_refined: bool,
              cam_weight: float, copy_move: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel final heatmap: the localizer map, blended with the refined CAM heatmap
    (weight ``cam_weight``) when refinement ran; copy-move regions (source and paste) on top."""
    heat = ts_map.astype(np.float32)
    if was_refined:
        heat = (1 - cam_weight) * heat + cam_weight * refined.astype(np.float32)
    if copy_move is not None:
        heat = np.maximum(heat, copy_move.astype(np.float32))
    return heat


def mask_cutoff(heatmap: np.ndarray, rule: str, floor: float, ratio: float = 0.0) -> float:
    """The pixel threshold of one image's mask. ``absolute``: ``floor`` for every image;
    ``relative``: at least ``ratio`` of the image's peak, because the map's level varies from
    image to image (an uncompressed splice lights up less than a double-JPEG one) while its
    ranking holds; ``otsu``: Otsu's split of the image's own values. Never below ``floor``."""
    if rule == "absolute":
        return floor
    if rule == "relative":
        return max(floor, ratio * float(heatmap.max()))
    if rule == "otsu":
        values = heatmap if heatmap.size <= 1 << 18 else heatmap[::4, ::4]
        if float(values.max()) - float(values.min()) < 1e-6:
            return floor
        return max(floor, float(threshold_otsu(values)))
    raise ValueError(f"unknown mask rule {rule!r}")


def final_decision(heatmap: np.ndarray, score: float, config: PipelineConfig,
                   copy_move: np.ndarray | None = None) -> np.ndarray:
    """The reported mask, only in tampered images: the verified copy-move regions when the
    detector found a clone (the localizer's other hot pixels are then false alarms: mean
    mask F1 on the validation split 0.370 vs 0.334 for the union, MODEL_CARD.md), else the
    heatmap pixels over the mask threshold. ``copy_move`` at the heatmap's resolution."""
    if score < config.tamper_threshold:
        return np.zeros(heatmap.shape, bool)
    if copy_move is not None:
        clone = copy_move >= 0.5
        if clone.any():
            return clone
    return heatmap >= mask_cutoff(heatmap, config.mask_rule, config.mask_threshold,
                                  config.mask_ratio)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def heatmap_png(heatmap: np.ndarray) -> bytes:
    colour = cv2.applyColorMap((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return encode_png(colour)


class Finalize:
    """Scores, the binary mask at the original resolution (PNG), optional heatmap, timings.
    Drops the large intermediate arrays: what leaves this stage is one output row each."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.versions = model_versions(config)

    def __call__(self, batch: Batch) -> Batch:
        n = _n(batch)
        scores = image_score(batch, self.config)
        tampered = _ok(batch) & (scores >= self.config.tamper_threshold)
        masks, heatmaps, fractions = [], [], np.zeros(n, np.float32)
        cm_maps = batch.get("cm_map")
        for i in range(n):
            if batch["status"][i] != "ok":
                masks.append(b"")
                heatmaps.append(b"")
                continue
            w, h = int(batch["width"][i]), int(batch["height"][i])
            heat = final_map(batch["ts_map"][i], batch["refined"][i], batch["was_refined"][i],
                             self.config.cam_weight, None if cm_maps is None else cm_maps[i])
            full = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
            clone = None  # resized to the original only when there is a clone
            if cm_maps is not None and cm_maps[i].any():
                clone = cv2.resize(cm_maps[i].astype(np.float32), (w, h),
                                   interpolation=cv2.INTER_LINEAR)
            mask = final_decision(full, float(scores[i]), self.config, clone)
            fractions[i] = mask.mean()
            masks.append(encode_png(mask.astype(np.uint8) * 255))
            heatmaps.append(heatmap_png(heat) if self.config.write_heatmaps else b"")
        timings = [k for k in ("t_decode", "t_copy_move", "t_localize", "t_detect", "t_refine")
                   if k in batch]
        ok = _ok(batch)
        return {
            "uri": batch["uri"], "status": batch["status"], "error": batch["error"],
            "width": batch["width"], "height": batch["height"],
            "score": np.where(ok, scores, np.nan).astype(np.float32),
            "tampered": tampered,
            "score_two_stream": np.where(ok, batch["score_two_stream"], np.nan),
            "score_wcbnet": np.where(ok, batch["score_wcbnet"], np.nan),
            "score_wcbnet_heads": batch["score_wcbnet_heads"],
            "score_copy_move": np.where(ok, batch.get("score_copy_move", np.zeros(n)), np.nan
                                        ).astype(np.float32),
            "refined": batch["was_refined"],
            "mask_fraction": fractions,
            "mask_png": np.array(masks, dtype=object),
            "heatmap_png": np.array(heatmaps, dtype=object),
            "model_versions": _strings([self.versions] * n),
            **{k: batch[k] for k in timings},
        }


def analyse(stages: list[Callable[[Batch], Batch]], batch: Batch) -> Batch:
    """Run stages in order on one batch: the whole graph in-process (endpoint, tests)."""
    for stage in stages:
        batch = stage(batch)
    return batch


def build_stages(config: PipelineConfig) -> list[Callable[[Batch], Batch]]:
    """The in-process graph from bytes to output rows (everything after ReadBytes)."""
    return [DecodeELA(config), Localize(config), Detect(config), Refine(config),
            Finalize(config)]
