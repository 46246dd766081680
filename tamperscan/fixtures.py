"""Reproducible inputs for tests and benchmarks: photo-like images and nets of the shipped
architecture with seeded random weights. In the package (not tests/) so benchmarks and
scripts can use them without importing the test suite."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tamperscan.config import PipelineConfig


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Photo-like RGB uint8: smooth gradients, blurred blobs at two scales, mild sensor noise.

    Pure noise or flat colour would make JPEG/ELA behave unlike on photos; this has both
    smooth areas and textured detail.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    for channel in range(3):
        gx, gy = rng.uniform(-1, 1, size=2)
        gradient = 128 + 60 * (gx * xx / max(width, 1) + gy * yy / max(height, 1))
        coarse = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 8)
        fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.2)
        image[..., channel] = gradient + 900 * coarse + 40 * fine
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)



def random_weights_config(folder: Path, **overrides) -> PipelineConfig:
    """Default-config nets with seeded random weights: pipeline tests need real nets of the
    shipped architecture, not trained accuracy. Random nets score every image near 0.5, so
    all pass the cascade: refinement runs at a small working size to keep tests quick, and the
    torch backend skips the one-off ONNX export (engine parity has its own tests). WCBnet sits
    on the localizer's streams, as shipped, so the nets share one encoder pass."""
    refine = {"size": 64, "cam_weight": 0.5, **overrides.pop("refine", {})}  # refinement in
    runtime = {"backend": "torch", **overrides.pop("runtime", {})}  # the path under test
    import torch  # here, not at the top: image-only users (decoder tests) stay torch-free

    from tamperscan.nets.build import build_model, load_config, load_localizer_streams, save_weights

    torch.manual_seed(0)
    paths = {}
    for name in ("two_stream", "wcbnet"):
        path = folder / f"{name}-random.safetensors"
        if not path.exists():
            model = build_model(load_config(name))
            if name == "wcbnet":  # on the localizer's streams, as the shipped pair
                load_localizer_streams(model, paths["two_stream"])
            save_weights(model, path)
        paths[name] = str(path)
    return PipelineConfig.model_validate({
        "two_stream_weights": paths["two_stream"], "wcbnet_weights": paths["wcbnet"],
        "refine": refine, "runtime": runtime, **overrides})
