"""Evaluation with the field's protocol on any folder holding ``MANIFEST.csv`` (image,mask,label).

Pixel metrics are computed per forged image at the ground truth's resolution and averaged:
F1 at a fixed 0.5 threshold, best-threshold F1 (an oracle per image, labelled as such) and
pixel AUC. Image AUC and balanced accuracy use forged + authentic images. Every method,
baselines included, goes through the same code. Thresholds come from the config, never from
the evaluation data.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score

from tamperscan.batch import bytes_batch
from tamperscan.config import PipelineConfig
from tamperscan.graph import analyse, build_stages
from tamperscan.image_metrics import THRESHOLD_FIGURES, threshold_figures
from tamperscan.render import fit
from tamperscan.stages import map_score

METHODS = ("two_stream", "cam", "cam_refined", "copy_move", "jpeg", "final", "ela",
           "all_tampered")
ROBUSTNESS = {"jpeg95": ("jpeg", 95), "jpeg85": ("jpeg", 85), "jpeg75": ("jpeg", 75),
              "jpeg50": ("jpeg", 50), "resize0.75": ("resize", 0.75), "resize0.5": ("resize", 0.5)}


@dataclass
class Item:
    image: Path
    mask: Path | None
    label: int
    name: str = ""  # the image path as the manifest writes it


def read_manifest(folder: Path) -> list[Item]:
    with (folder / "MANIFEST.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [Item(folder / r["image"], folder / r["mask"] if r.get("mask") else None,
                 int(r["label"]), r["image"]) for r in rows]


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Ground truth as bool at (H, W); masks stored at another size are resized (nearest)."""
    mask = np.asarray(Image.open(path).convert("L")) > 127
    if mask.shape != shape:
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def perturb(data: bytes, kind: str, amount: float) -> bytes:
    """Post-processing attack applied to the file before scoring (robustness sweep)."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if kind == "resize":
        size = (max(1, round(image.width * amount)), max(1, round(image.height * amount)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(amount))
    return buffer.getvalue()


class ImageFailed(Exception):
    """An image the graph returned as an error row (its ``error`` text as the message)."""


@dataclass
class Scored:
    """Per-image outputs of every method: image scores, continuous maps, binary masks."""

    label: int
    truth: np.ndarray | None
    scores: dict[str, float]
    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    name: str = ""  # the manifest's image path: pairs the images of two reports


class Evaluator:
    """Runs the scan's own graph on each image (`graph.build_stages` with ``inspect``: the
    final score, map and mask are the scan's; the intermediate maps are kept, and the
    refined CAM is computed for every image so the ``cam_refined`` method can be measured)
    and keeps every method's outputs."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.stages = build_stages(config, inspect=True)

    def row(self, data: bytes) -> dict:
        """The graph's output for one image, every column of the one row."""
        return {k: v[0] for k, v in analyse(self.stages, bytes_batch([data])).items()}

    def score(self, data: bytes, label: int, mask_path: Path | None) -> Scored:
        """Every method's outputs for one image; an image the graph cannot score raises
        ``ImageFailed`` with the row's error."""
        row = self.row(data)
        if row["status"] != "ok":
            raise ImageFailed(str(row["error"]))
        w, h, s = int(row["width"]), int(row["height"]), row["rgb"].shape[0]

        def full(m: np.ndarray) -> np.ndarray:
            return fit(m, w, h)

        # The CAM is upsampled to the localizer size first, as refinement sees it.
        maps = {"two_stream": full(row["ts_map"]), "cam": full(fit(row["cam"], s, s)),
                "cam_refined": full(row["refined_map"]), "copy_move": full(row["cm_map"]),
                "jpeg": full(row["jpeg_map"]),
                "final": full(row["heatmap"]), "ela": row["ela_level"],
                "all_tampered": np.ones((h, w), np.float32)}
        masks = {k: v >= 0.5 for k, v in maps.items()}
        masks["final"] = row["mask"]
        scores = {"two_stream": float(row["score_two_stream"]),
                  "cam": float(row["score_wcbnet"]), "cam_refined": float(row["score_wcbnet"]),
                  "copy_move": float(row["score_copy_move"]), "jpeg": float(row["score_jpeg"]),
                  "final": float(row["score"]),
                  "ela": map_score(row["ela_level"]), "all_tampered": 1.0}
        truth = load_mask(mask_path, (h, w)) if mask_path else None
        return Scored(label, truth, scores, maps, masks)


def _pixel_metrics(truth: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> tuple[float, ...]:
    y = truth.ravel()
    f1 = f1_score(y, pred.ravel(), zero_division=0.0)
    precision, recall, _ = precision_recall_curve(y, prob.ravel())
    best = float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12)))
    auc = roc_auc_score(y, prob.ravel()) if 0 < y.sum() < y.size else float("nan")
    return float(f1), best, float(auc)


def image_records(scored: list[Scored]) -> list[dict]:
    """One record per scored image: name, label, every method's image score and -- for a
    forged image with a non-empty ground truth -- its pixel (F1@0.5, best F1, AUC). The
    report keeps them so that two reports on the same images can be compared image by image
    (tamperscan.compare), and so that the summary is recomputable from the file."""
    records = []
    for s in scored:
        forged = s.label == 1 and s.truth is not None and bool(s.truth.any())
        records.append({
            "image": s.name, "label": s.label,
            "scores": {m: s.scores[m] for m in METHODS},
            "pixel": {m: list(_pixel_metrics(s.truth, s.maps[m], s.masks[m]))
                      for m in METHODS} if forged else None})
    return records


def summarise_records(records: list[dict], tamper_threshold: float) -> dict[str, dict[str, float]]:
    """Per-method metrics: pixel metrics averaged over forged images; over all images the
    image AUC, the true-positive rate at 5 % and 1 % false alarms, and at the operating point
    (``tamper_threshold``) balanced accuracy, false-alarm and true-positive rates (NaN where a
    label is missing)."""
    out = {}
    forged = [r for r in records if r["pixel"] is not None]
    labels = np.array([r["label"] for r in records])
    both = len(set(labels.tolist())) == 2
    for method in METHODS:
        pix = (np.array([r["pixel"][method] for r in forged], dtype=float) if forged
               else np.full((1, 3), np.nan))
        image_scores = np.array([r["scores"][method] for r in records], float)
        figures = (threshold_figures(image_scores[labels == 1], image_scores[labels == 0],
                                     tamper_threshold) if both
                   else dict.fromkeys(THRESHOLD_FIGURES, float("nan")))
        out[method] = {
            "pixel_f1": float(np.nanmean(pix[:, 0])),
            "pixel_f1_best": float(np.nanmean(pix[:, 1])),
            "pixel_auc": float(np.nanmean(pix[:, 2])),
            "image_auc": float(roc_auc_score(labels, image_scores)) if both else float("nan"),
            **figures,
        }
    return out


def _iter_scored(evaluator: Evaluator, items: list[Item],
                 attack: Callable[[bytes], bytes] | None,
                 errors: list[dict]) -> Iterator[Scored]:
    """Scored images in manifest order; the ones the graph cannot score go to ``errors``
    (image, error), so a report says what it left out."""
    for item in items:
        data = item.image.read_bytes()
        if attack is not None:
            data = attack(data)
        try:
            result = evaluator.score(data, item.label, item.mask)
        except ImageFailed as exc:
            errors.append({"image": item.name, "error": str(exc)})
            continue
        result.name = item.name
        yield result


def evaluate(folder: Path, config: PipelineConfig | None = None, robustness: bool = False,
             limit: int | None = None, progress: Callable[[str], None] | None = None) -> dict:
    config = config or PipelineConfig()
    items = read_manifest(folder)[:limit]
    evaluator = Evaluator(config)
    runs = {"clean": None}
    if robustness:
        runs.update({name: (lambda d, k=k, a=a: perturb(d, k, a))
                     for name, (k, a) in ROBUSTNESS.items()})
    report: dict = {"dataset": folder.name, "tamper_threshold": config.tamper_threshold,
                    "n_forged": sum(i.label == 1 for i in items),
                    "n_authentic": sum(i.label == 0 for i in items)}
    for name, attack in runs.items():
        scored, errors = [], []
        for n, s in enumerate(_iter_scored(evaluator, items, attack, errors), 1):
            scored.append(s)
            if progress and n % 10 == 0:
                progress(f"{folder.name} [{name}] {n}/{len(items)}")
        records = image_records(scored)
        metrics = summarise_records(records, config.tamper_threshold)
        if name == "clean":
            report["methods"] = metrics
            report["n_scored"] = len(scored)
            report["errors"] = errors
            report["images"] = records
        else:
            report.setdefault("robustness", {})[name] = metrics
    return report


def markdown_table(report: dict) -> str:
    keys = ("pixel_f1", "pixel_f1_best", "pixel_auc", "image_auc", "tpr_at_5fa", "tpr_at_1fa",
            "balanced_accuracy", "false_alarm_rate")
    lines = [f"**{report['dataset']}** ({report['n_forged']} forged, "
             f"{report['n_authentic']} authentic)", "",
             "| method | F1@0.5 | best-threshold F1 (oracle) | pixel AUC | image AUC "
             "| TPR @ 5 % FA | TPR @ 1 % FA | bal. acc. (op.) | false alarms (op.) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, m in report["methods"].items():
        lines.append(f"| {method} | " + " | ".join(
            "–" if np.isnan(m.get(k, np.nan)) else f"{m[k]:.3f}" for k in keys) + " |")
    threshold = report.get("tamper_threshold")
    if threshold is not None:
        lines += ["", f"(op.): at the operating point, tamper_threshold {threshold:.4f}, "
                      "for every method's image score"]
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=True))
