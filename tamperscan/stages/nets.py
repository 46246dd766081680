"""The two nets as stages: each loads its config + weights into an inference engine and runs
it on the ``ok`` rows of a batch (model stages: GPU actors / Serve deployments)."""

from __future__ import annotations

import time

import cv2
import numpy as np
from scipy.special import expit

from tamperscan.batch import Batch, mark_error, ok_rows, size, with_row_state
from tamperscan.config import PipelineConfig, model_path
from tamperscan.engines import build_engine
from tamperscan.nets.build import build_model, load_config, load_weights, parse_config
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


class NetStage:
    """One net from config + weights in the configured engine; subclasses say which net
    (``config_attr``/``weights_attr``) and what to compute from its outputs."""

    kind = "model"
    config_attr: str
    weights_attr: str
    timing: str

    @classmethod
    def reads(cls, config: PipelineConfig) -> tuple[str, ...]:
        """The input columns it reads (besides ``uri`` and the row state): all a front door
        that runs it elsewhere (the endpoint's deployments) has to send. Its net's config
        names them."""
        net = parse_config(load_config(getattr(config, cls.config_attr)))
        return tuple(INPUT_COLUMNS[name] for name in net.input_names)

    def __init__(self, config: PipelineConfig) -> None:
        net_config = load_config(getattr(config, self.config_attr))
        self.weights = model_path(getattr(config, self.weights_attr))
        if not self.weights.exists():
            raise FileNotFoundError(f"weights not found: {self.weights} (see "
                                    "models/MODEL_CARD.md)")
        model = build_model(net_config).eval()
        load_weights(model, self.weights)
        runtime = config.runtime
        self.engine = build_engine(model, runtime.backend, precision=runtime.precision,
                                   cache_dir=runtime.engine_cache_dir,
                                   threads=runtime.threads or None)
        self.engine.warm_up()
        self.size = int(net_config["input_size"])
        self.model_name = getattr(config, self.config_attr)

    def empty(self, n: int) -> Batch:
        """The stage's output columns for ``n`` rows, before any is computed."""
        raise NotImplementedError

    def compute(self, batch: Batch, rows: np.ndarray) -> Batch:
        """Output values for ``rows`` (indices of ``ok`` rows), one forward pass."""
        raise NotImplementedError

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


class Localize(NetStage):
    """Two-stream localizer: per-pixel tamper probability at the model size + image score."""

    config_attr, weights_attr, timing = "two_stream_config", "two_stream_weights", "t_localize"

    def empty(self, n: int) -> Batch:
        return {"ts_map": np.zeros((n, self.size, self.size), np.float16),
                "score_two_stream": np.zeros(n, np.float32)}

    def compute(self, batch: Batch, rows: np.ndarray) -> Batch:
        logits = self.engine(net_feeds(batch, rows, self.engine.input_names))["logits"]
        prob = expit(logits[:, 0])
        return {"ts_map": prob.astype(np.float16),
                "score_two_stream": np.array([map_score(p) for p in prob], np.float32)}


class Detect(NetStage):
    """WCBnet: p(manipulated) from three cross-block heads and their fused, normalised CAM."""

    config_attr, weights_attr, timing = "wcbnet_config", "wcbnet_weights", "t_detect"

    def empty(self, n: int) -> Batch:
        c = self.size // 4
        return {"score_wcbnet_heads": np.zeros((n, 3), np.float32),
                "score_wcbnet": np.zeros(n, np.float32),
                "cam_views": np.zeros((n, 3, c, c), np.float16),
                "cam": np.zeros((n, c, c), np.float16)}

    def compute(self, batch: Batch, rows: np.ndarray) -> Batch:
        out = self.engine(net_feeds(batch, rows, self.engine.input_names))
        heads = expit(out["logits"])
        views = normalize_cams(out["cams"])
        return {"score_wcbnet_heads": heads.astype(np.float32),
                "score_wcbnet": heads.mean(axis=1).astype(np.float32),
                "cam_views": views.astype(np.float16),
                "cam": fuse_geometric(views).astype(np.float16)}


