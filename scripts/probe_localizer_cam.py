"""Probe for the CAM path (issue #22): could a WCBnet-style head on the shipped localizer's
features classify images and localize through its CAM? Per feature level of the localizer
(ELA stream, RGB stream, and their sum as the localizer fuses them), a logistic regression
over the globally average-pooled features is fitted on image labels (5-fold cross-validation
on the validation split), and its CAM -- ReLU(w . F), the Grad-CAM of a GAP -> dense head --
is scored against the ground-truth masks of the held-out folds.

    .venv/bin/python scripts/make_val_set.py --out /tmp/tamperscan-val300cm --count 300
    .venv/bin/python scripts/probe_localizer_cam.py /tmp/tamperscan-val300cm
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from tamperscan.batch import bytes_batch
from tamperscan.config import PipelineConfig
from tamperscan.nets.build import build_model, load_config, load_weights
from tamperscan.stages import DecodeELA

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"ELA stream F4": ("ela", 3), "ELA stream F5": ("ela", 4),
          "RGB stream F5": ("rgb", 4), "fused F3 (RGB + ELA)": ("sum", 2),
          "fused F5 (RGB + ELA)": ("sum", 4)}


def features(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
    """Per level: (n, C, h, w) feature maps of every image; labels; masks (None if authentic)."""
    rows = list(csv.DictReader((folder / "MANIFEST.csv").open()))
    decode = DecodeELA(PipelineConfig())
    net = build_model(load_config(ROOT / "models/two_stream.yaml"))
    load_weights(net, ROOT / "models/two_stream.safetensors")
    net.eval()
    maps: dict[str, list[np.ndarray]] = {name: [] for name in LEVELS}
    labels, masks = [], []
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            chunk = rows[start:start + 8]
            batch = decode(bytes_batch([(folder / r["image"]).read_bytes() for r in chunk]))
            rgb = torch.from_numpy(np.asarray(batch["rgb"], np.float32) / 255).permute(0, 3, 1, 2)
            ela = torch.from_numpy(np.asarray(batch["ela"], np.float32)).permute(0, 3, 1, 2)
            streams = {"rgb": net.rgb_stream((rgb - net.rgb_mean) / net.rgb_std),
                       "ela": net.ela_stream(ela)}
            for name, (stream, level) in LEVELS.items():
                f = (streams["rgb"][level] + streams["ela"][level] if stream == "sum"
                     else streams[stream][level])
                maps[name].append(f.numpy())
            for r in chunk:
                labels.append(int(r["label"]))
                forged = int(r["label"]) and r.get("mask")
                masks.append(np.asarray(Image.open(folder / r["mask"]).convert("L")) > 127
                             if forged else None)
    return {k: np.concatenate(v) for k, v in maps.items()}, np.array(labels), masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="validation split (make_val_set.py)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    maps, y, masks = features(args.folder)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    print("| features | image AUC (5-fold CV) | CAM pixel AUC (held-out forged) |\n|---|---|---|")
    for name, fmap in maps.items():
        pooled = fmap.mean(axis=(2, 3))
        head = LogisticRegression(C=0.1, max_iter=2000)
        score = cross_val_predict(head, pooled, y, cv=folds, method="predict_proba")[:, 1]
        pixel = []
        for train, test in folds.split(pooled, y):
            w = LogisticRegression(C=0.1, max_iter=2000).fit(pooled[train], y[train]).coef_[0]
            for i in test:
                if masks[i] is None or masks[i].all() or not masks[i].any():
                    continue
                cam = np.maximum(np.tensordot(w, fmap[i], axes=(0, 0)), 0).astype(np.float32)
                cam = cv2.resize(cam, masks[i].shape[::-1], interpolation=cv2.INTER_LINEAR)
                pixel.append(roc_auc_score(masks[i].ravel(), cam.ravel()))
        print(f"| {name} | {roc_auc_score(y, score):.3f} | {np.mean(pixel):.3f} ({len(pixel)}) |")


if __name__ == "__main__":
    main()
