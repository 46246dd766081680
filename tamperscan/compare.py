"""Paired bootstrap comparison of two evaluation reports on the same images.

Why: the forgery sets are small (15-129 images), so a change of a few hundredths in a mean
metric can be one image. Deciding whether new weights or rules are better needs the spread
of the difference, and the difference is far less noisy *paired* (both reports resampled
with the same images) than two separate intervals. Each bootstrap sample draws the forged
images (pixel metrics) and, separately, the forged and the authentic images (image AUC:
stratified, so every sample has both classes) with replacement, the same draw for both
reports; the mean over datasets -- how the issue's targets are stated -- resamples every
dataset independently and averages per sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tamperscan.image_metrics import THRESHOLD_FIGURES, threshold_figures

PIXEL_METRICS = ("pixel_f1", "pixel_f1_best", "pixel_auc")
#: Image-level figures at a threshold: 5 % / 1 % false alarms on the set's authentic images,
#: and each report's own operating point (its ``tamper_threshold``); the operating point's
#: true-positive rate is left to `evaluate`'s table.
THRESHOLD_METRICS = tuple(f for f in THRESHOLD_FIGURES if f != "tpr")
METRICS = (*PIXEL_METRICS, "image_auc", *THRESHOLD_METRICS)


@dataclass
class Difference:
    """A metric of both reports on the full sets, and the bootstrap of candidate - base."""

    base: float
    candidate: float
    low: float  # 2.5th percentile of the paired difference
    high: float  # 97.5th percentile
    p_better: float  # share of samples where the candidate is ahead (ties count half)

    @property
    def diff(self) -> float:
        return self.candidate - self.base


def load_reports(path: Path) -> dict[str, dict]:
    """A report JSON, or a folder of them (`scripts/evaluate_all.sh` output), by dataset."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    reports = {}
    for file in files:
        report = json.loads(file.read_text())
        if "methods" in report and "dataset" in report:
            reports[report["dataset"]] = report
    if not reports:
        raise ValueError(f"no evaluation report in {path}")
    return reports


def _records(report: dict) -> dict[str, dict]:
    if "images" not in report:
        raise ValueError(f"report on {report['dataset']!r} has no per-image records: "
                         "re-run `tamperscan evaluate` (they were added in December 2026)")
    return {r["image"]: r for r in report["images"]}


def _auc_matrix(forged: np.ndarray, authentic: np.ndarray) -> np.ndarray:
    """Mann-Whitney kernel: 1 where a forged score beats an authentic one, 1/2 on ties."""
    return (forged[:, None] > authentic[None, :]) + 0.5 * (forged[:, None] == authentic[None, :])


def _weighted_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per sample, the mean of ``values`` under bootstrap ``counts`` (NaN values skipped)."""
    ok = ~np.isnan(values)
    weights = counts[:, ok]
    return weights @ values[ok] / np.maximum(weights.sum(axis=1), 1)


class PairedSamples:
    """Bootstrap samples of every metric of one method for both reports on one dataset."""

    def __init__(self, base: dict, candidate: dict, method: str, samples: int,
                 rng: np.random.Generator) -> None:
        a, b = _records(base), _records(candidate)
        if set(a) != set(b):
            missing = sorted(set(a) ^ set(b))[:5]
            raise ValueError(f"{base['dataset']}: the reports scored different images "
                             f"(e.g. {missing})")
        names = sorted(a)
        forged = [n for n in names if a[n]["pixel"] is not None and b[n]["pixel"] is not None]
        self.full: dict[str, tuple[float, float]] = {}
        self.draws: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if forged:
            counts = rng.multinomial(len(forged), np.full(len(forged), 1 / len(forged)),
                                     size=samples)
            for k, metric in enumerate(PIXEL_METRICS):
                va, vb = (np.array([r[n]["pixel"][method][k] for n in forged], float)
                          for r in (a, b))
                self.full[metric] = (float(np.nanmean(va)), float(np.nanmean(vb)))
                self.draws[metric] = (_weighted_means(counts, va), _weighted_means(counts, vb))
        pos = [n for n in names if a[n]["label"] == 1]
        neg = [n for n in names if a[n]["label"] == 0]
        if pos and neg:
            cp = rng.multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=samples)
            cn = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=samples)
            full, draws = [], []
            for r in (a, b):
                kernel = _auc_matrix(np.array([r[n]["scores"][method] for n in pos], float),
                                     np.array([r[n]["scores"][method] for n in neg], float))
                full.append(float(kernel.mean()))
                draws.append(np.einsum("sp,pn,sn->s", cp, kernel, cn) / (len(pos) * len(neg)))
            self.full["image_auc"] = (full[0], full[1])
            self.draws["image_auc"] = (draws[0], draws[1])
            self._threshold_metrics((base, candidate), (a, b), pos, neg, method, cp, cn)

    def _threshold_metrics(self, reports, records, pos, neg, method, cp, cn) -> None:
        """The same resamples (counts ``cp``/``cn``) for the threshold figures."""
        per_report = []
        for report, r in zip(reports, records, strict=True):
            forged = np.array([r[n]["scores"][method] for n in pos], float)
            authentic = np.array([r[n]["scores"][method] for n in neg], float)
            threshold = report.get("tamper_threshold", 0.5)
            full = threshold_figures(forged, authentic, threshold)
            samples = [threshold_figures(forged, authentic, threshold, p, q)
                       for p, q in zip(cp, cn, strict=True)]
            per_report.append((full, samples))
        for metric in THRESHOLD_METRICS:
            self.full[metric] = tuple(full[metric] for full, _ in per_report)
            self.draws[metric] = tuple(np.array([s[metric] for s in samples])
                                       for _, samples in per_report)


def _difference(full: tuple[float, float], draws: tuple[np.ndarray, np.ndarray]) -> Difference:
    delta = draws[1] - draws[0]
    low, high = np.percentile(delta, [2.5, 97.5])
    p_better = float(np.mean(delta > 0) + 0.5 * np.mean(delta == 0))
    return Difference(full[0], full[1], float(low), float(high), p_better)


def shared_datasets(base: dict[str, dict], candidate: dict[str, dict]) -> list[str]:
    """Datasets in both collections (a folder may hold an extra report, e.g. a validation
    split); none in common is an error."""
    names = sorted(set(base) & set(candidate))
    if not names:
        raise ValueError(f"different datasets: {sorted(base)} vs {sorted(candidate)}")
    return names


def compare(base: dict[str, dict], candidate: dict[str, dict], method: str = "final",
            samples: int = 2000, seed: int = 0) -> dict[str, dict[str, Difference]]:
    """Per dataset (and ``"mean"`` over the datasets) and metric, the paired difference, on
    the datasets both sides report (`shared_datasets`)."""
    names = shared_datasets(base, candidate)
    rng = np.random.default_rng(seed)
    per_set = {name: PairedSamples(base[name], candidate[name], method, samples, rng)
               for name in names}
    out = {name: {m: _difference(s.full[m], s.draws[m]) for m in METRICS if m in s.full}
           for name, s in per_set.items()}
    mean = {}
    for metric in METRICS:
        sets = [s for s in per_set.values() if metric in s.full]
        if sets and len(per_set) > 1:  # over the sets that have the metric
            full = tuple(float(np.mean([s.full[metric][i] for s in sets])) for i in (0, 1))
            draws = tuple(np.mean([s.draws[metric][i] for s in sets], axis=0) for i in (0, 1))
            mean[metric] = _difference(full, draws)
    if mean:
        out["mean"] = mean
    return out


def markdown(result: dict[str, dict[str, Difference]], method: str) -> str:
    lines = [f"`{method}`: candidate − base, paired bootstrap 95 % interval, "
             "P(candidate ahead)", "",
             "| dataset | metric | base | candidate | difference | 95 % interval | P(ahead) |",
             "|---|---|---|---|---|---|---|"]
    for name, metrics in result.items():
        for metric, d in metrics.items():
            lines.append(f"| {name} | {metric} | {d.base:.3f} | {d.candidate:.3f} | "
                         f"{d.diff:+.3f} | [{d.low:+.3f}, {d.high:+.3f}] | {d.p_better:.2f} |")
    return "\n".join(lines)
