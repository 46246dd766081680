"""Logistic image score: the nets' per-image evidence weighed by a model fit on validation data.

Why: the localizer's blurred-max score is high on every busy, high-error-level photo, forged or
not, so a fixed rule (the mean of the localizer's and WCBnet's scores) ranks images weakly;
a logistic regression over a few per-image statistics -- the blurred max, how uneven the map
is, how much error level the image has overall -- can weigh them for the images a deployment
actually sees. scripts/fit_image_score.py fits it on a labelled folder for one set of weights
(``fitted_for``). Fit on synthetic validation splits it ranked independent synthetic splits
better (image AUC +0.016 to +0.020) but lost on the evaluation sets (MODEL_CARD.md, eighth
session): none ships, and a model should be fit on data like the archive it will score.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, model_validator
from scipy.special import expit

log = logging.getLogger(__name__)


def map_score(prob: np.ndarray, fraction: int = 32) -> float:
    """Image score of a localizer map: the max after a box blur of side / ``fraction``, so
    that one hot pixel does not flag an image but a tampered region of a few percent of the
    side does."""
    k = max(3, prob.shape[-1] // fraction) | 1
    return float(cv2.blur(prob.astype(np.float32), (k, k)).max())


def _ela_levels(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [e.astype(np.float32).mean(axis=2) for e in batch["ela"]]


#: Per-image evidence a model may use. Stage outputs are read from the batch; the others are
#: derived here from the maps already in it (localizer map, ELA), and only when a model asks,
#: so the default scan pays nothing for them.
FEATURES = {
    "score_two_stream": "Localize: max of the probability map after a side/32 box blur",
    "score_wcbnet": "Detect: mean of the three heads' probabilities",
    "ts_std": "standard deviation of the localizer's probability map",
    "ela_score": "the blurred max (as score_two_stream) of the channel-mean ELA map",
    "ela_p99": "99th percentile of the channel-mean ELA map",
}
_DERIVED = {
    "ts_std": lambda b: b["ts_map"].reshape(len(b["ts_map"]), -1).astype(np.float32).std(axis=1),
    "ela_score": lambda b: [map_score(level) for level in _ela_levels(b)],
    "ela_p99": lambda b: [np.percentile(level, 99) for level in _ela_levels(b)],
}


def feature(batch: dict[str, np.ndarray], name: str) -> np.ndarray:
    """One feature per row: the batch's column of that name when it has one (stage outputs,
    or features collected earlier), else derived from its maps."""
    if name in batch:
        return np.asarray(batch[name], np.float64)
    return np.asarray(_DERIVED[name](batch), np.float64)


class ImageScoreModel(BaseModel):
    """p(tampered | features) = sigmoid(coef . (x - mean) / scale + intercept)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    #: `stages.model_versions` of the weights whose outputs it was fit on.
    fitted_for: str = ""
    #: How it was fit (command, data, validation AUCs).
    note: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ImageScoreModel:
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(FEATURES)}")
        n = len(self.features)
        if not n or any(len(v) != n for v in (self.mean, self.scale, self.coef)):
            raise ValueError("features, mean, scale and coef must have the same length (> 0)")
        if any(s <= 0 for s in self.scale):
            raise ValueError("scale must be positive")
        return self

    def probability(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        x = np.stack([feature(batch, f) for f in self.features], axis=1)
        z = ((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef)
        return expit(z + self.intercept)

    def save(self, path: Path, header: str = "") -> None:
        text = yaml.safe_dump(self.model_dump(), sort_keys=False, width=100)
        path.write_text("".join(f"# {line}\n" for line in header.splitlines()) + text)


@lru_cache(maxsize=8)
def load_score_model(path: str, weights_version: str = "") -> ImageScoreModel:
    """The model in ``path`` (cached: every batch asks). Warns once when it was fit for other
    weights than ``weights_version``: the score still works, but is no longer calibrated."""
    model = ImageScoreModel.model_validate(yaml.safe_load(Path(path).read_text()))
    if weights_version and model.fitted_for and model.fitted_for != weights_version:
        log.warning("image score model %s was fit for %s, the pipeline runs %s: refit it "
                    "(scripts/fit_image_score.py)", path, model.fitted_for, weights_version)
    return model
