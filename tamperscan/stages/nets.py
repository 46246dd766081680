"""The two nets as one model stage (GPU actors / Serve deployments): each net's config +
weights in an inference engine, run on the ``ok`` rows of a batch. When WCBnet sits on the
localizer's frozen streams (the shipped pair) both run as one graph with one encoder pass
(`tamperscan.nets.shared`); any other pair runs as two engines, one after the other."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.special import expit
from torch import nn

from tamperscan.batch import Batch, mark_error, ok_rows, size, with_row_state
from tamperscan.config import PipelineConfig, model_path
from tamperscan.engines import Engine, build_engine
from tamperscan.nets.build import build_model, load_config, load_weights, parse_config
from tamperscan.nets.shared import SharedStreams, shares_streams
from tamperscan.preprocess.inputs import INPUT_COLUMNS
from tamperscan.refine.cam import fuse_geometric, normalize_cams


def map_score(prob: np.ndarray, fraction: int = 32) -> float:
    """Image score of a probability map: the max after a box blur of side / ``fraction``, so
    that one hot pixel does not flag an image but a tampered region of a few percent of the
    side does."""
    k = max(3, prob.shape[-1] // fraction) | 1
    return float(cv2.blur(prob.astype(np.float32), (k, k)).max())


def nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32)


def net_feeds(batch: Batch, rows: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A net's inputs for ``rows``, NCHW float32, built the same way for every net (rgb
    scaled to [0, 1])."""
    feeds = {name: nchw(batch[INPUT_COLUMNS[name]][rows]) for name in names}
    if "rgb" in feeds:
        feeds["rgb"] /= 255.0
    return feeds


@dataclass(frozen=True)
class Net:
    """One of the graph's nets: where the pipeline config names its net config and weights;
    ``name`` is its image-score column's suffix (``score_<name>``)."""

    name: str
    config_attr: str
    weights_attr: str


LOCALIZER = Net("two_stream", "two_stream_config", "two_stream_weights")
DETECTOR = Net("wcbnet", "wcbnet_config", "wcbnet_weights")
#: The nets the model stage runs, in the order their engines run.
NETS: tuple[Net, ...] = (LOCALIZER, DETECTOR)


def weights_file(config: PipelineConfig, net: Net) -> Path:
    path = model_path(getattr(config, net.weights_attr))
    if not path.exists():
        raise FileNotFoundError(f"weights not found: {path} (see models/MODEL_CARD.md)")
    return path


def load_net(config: PipelineConfig, net: Net, weights: Path | None = None) -> nn.Module:
    """``net`` built from its config with its weights (``weights_file`` unless given), in
    eval mode."""
    model = build_model(load_config(getattr(config, net.config_attr))).eval()
    load_weights(model, weights or weights_file(config, net))
    return model


class Nets:
    """The localizer (per-pixel tamper probability at the model size + image score) and WCBnet
    (p(manipulated) from three cross-block heads and their fused, normalised CAM) on the same
    rows, in as few passes as their weights allow."""

    kind, timing = "model", "t_nets"

    @classmethod
    def reads(cls, config: PipelineConfig) -> tuple[str, ...]:
        """The input columns it reads (besides ``uri`` and the row state): all a front door
        that runs it elsewhere (the endpoint's deployment) has to send. The nets' configs
        name them."""
        names = [name for net in NETS for name in
                 parse_config(load_config(getattr(config, net.config_attr))).input_names]
        return tuple(dict.fromkeys(INPUT_COLUMNS[name] for name in names))

    def __init__(self, config: PipelineConfig) -> None:
        self.weights = {net.name: weights_file(config, net) for net in NETS}
        localizer, wcbnet = (load_net(config, net, self.weights[net.name]) for net in NETS)
        self.model_names = {net.name: getattr(config, net.config_attr) for net in NETS}
        self.shared = shares_streams(localizer, wcbnet)
        models = {"shared_streams": SharedStreams(localizer, wcbnet)} if self.shared else {
            LOCALIZER.name: localizer, DETECTOR.name: wcbnet}
        runtime = config.runtime
        self.engines: dict[str, Engine] = {
            name: build_engine(model, runtime.backend, precision=runtime.precision,
                               cache_dir=runtime.engine_cache_dir,
                               threads=runtime.threads or None)
            for name, model in models.items()}
        for engine in self.engines.values():
            engine.warm_up()
        self.size = int(localizer.config.input_size)
        self.cam_size = int(wcbnet.config.input_size) // 4

    @property
    def backends(self) -> str:
        """What runs, e.g. "shared_streams onnxruntime int8" (benchmark and log lines)."""
        return ", ".join(f"{name} {engine.name} {engine.precision}"
                         for name, engine in self.engines.items())

    def empty(self, n: int) -> Batch:
        """The stage's output columns for ``n`` rows, before any is computed."""
        c = self.cam_size
        return {"ts_map": np.zeros((n, self.size, self.size), np.float16),
                "score_two_stream": np.zeros(n, np.float32),
                "score_wcbnet_heads": np.zeros((n, 3), np.float32),
                "score_wcbnet": np.zeros(n, np.float32),
                "cam_views": np.zeros((n, 3, c, c), np.float16),
                "cam": np.zeros((n, c, c), np.float16)}

    def forward(self, batch: Batch, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """(localizer logits, WCBnet head logits, CAMs) for ``rows``."""
        if self.shared:
            engine = self.engines["shared_streams"]
            out = engine(net_feeds(batch, rows, engine.input_names))
            return out["map_logits"], out["logits"], out["cams"]
        localizer, wcbnet = self.engines[LOCALIZER.name], self.engines[DETECTOR.name]
        heads = wcbnet(net_feeds(batch, rows, wcbnet.input_names))
        return (localizer(net_feeds(batch, rows, localizer.input_names))["logits"],
                heads["logits"], heads["cams"])

    def compute(self, batch: Batch, rows: np.ndarray) -> Batch:
        """Output values for ``rows`` (indices of ``ok`` rows)."""
        map_logits, head_logits, cams = self.forward(batch, rows)
        prob = expit(map_logits[:, 0])
        heads = expit(head_logits)
        views = normalize_cams(cams)
        return {"ts_map": prob.astype(np.float16),
                "score_two_stream": np.array([map_score(p) for p in prob], np.float32),
                "score_wcbnet_heads": heads.astype(np.float32),
                "score_wcbnet": heads.mean(axis=1).astype(np.float32),
                "cam_views": views.astype(np.float16),
                "cam": fuse_geometric(views).astype(np.float16)}

    def __call__(self, batch: Batch) -> Batch:
        n = size(batch)
        out = {**with_row_state(batch), **self.empty(n), self.timing: np.zeros(n, np.float32)}
        rows = np.flatnonzero(ok_rows(batch))
        if rows.size:
            start = time.perf_counter()
            try:
                for key, value in self.compute(batch, rows).items():
                    out[key][rows] = value
            except Exception as exc:  # e.g. out of memory: fail these rows, keep the job
                for i in rows:
                    mark_error(out, i, "internal", f"{type(exc).__name__}: {exc}")
            out[self.timing][rows] = (time.perf_counter() - start) / rows.size
        return out
