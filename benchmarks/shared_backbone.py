"""What one encoder pass for both nets saves: the localizer plus a WCBnet on its streams
(``models/wcbnet.yaml``) run as two nets, against one pass of the localizer's encoder
whose fused blocks feed both the localizer's decoder and WCBnet's heads
(``TwoStreamEncoder.fused`` -> ``TwoStreamLocalizer.decode`` + ``WCBNet.classify``). The
ResNet18 WCBnet over signed ELA at 256 px beside the localizer (the layout before the streams
WCBnet) is measured in the same run as the baseline.

Then the same comparison as the pipeline runs it: the graph's model stage
(``tamperscan.stages.Nets``, shipped config and weights) with its one shared graph against the
same stage running the two nets as two engines, on ``--stage-backend`` (default the CPU's
production choice, ONNX Runtime int8), on decoded sample images.

Usage: .venv/bin/python benchmarks/shared_backbone.py [--batch 8] [--runs 5] [--threads 1]
       [--stage-backend onnxruntime/int8]

CPU, eval mode, torch.no_grad, random inputs; median of ``--runs`` timed runs after a warm-up.
Both layouts give the same outputs (checked before timing); frozen streams make the WCBnet's
backbone the localizer's, which is what makes the shared pass exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from unittest import mock

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import machine_info, print_header  # noqa: E402
from benchmarks.model_weights import with_weights  # noqa: E402
from benchmarks.nets import median_seconds  # noqa: E402
from tamperscan import fixtures  # noqa: E402
from tamperscan.batch import bytes_batch  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.nets import build_model, load_config  # noqa: E402
from tamperscan.stages import DecodeELA, Nets  # noqa: E402
from tamperscan.stages import nets as net_stages  # noqa: E402

RESNET18 = {"arch": "wcbnet", "input_size": 256, "backbone": "resnet18", "head_blocks": [2, 3, 4],
            "embed_dim": 64, "attention_dim": 32, "separate_backbones": False}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stage-backend", default="onnxruntime/int8",
                        help="backend[/precision] of the model-stage arm")
    args = parser.parse_args(argv)
    print_header(machine_info(None if argv is None else ["benchmarks/shared_backbone.py",
                                                         *argv]))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    localizer = build_model(load_config("two_stream")).eval()
    streams = build_model(load_config("wcbnet")).eval()
    streams.backbones[0].load_state_dict(
        {k: v for k, v in localizer.state_dict().items()
         if k.startswith(("rgb_stream.", "ela_stream."))})
    resnet = build_model(RESNET18).eval()
    size = localizer.config.input_size
    rgb, ela = torch.rand(args.batch, 3, size, size), torch.rand(args.batch, 3, size, size)
    sela = torch.rand(args.batch, 3, 256, 256) * 2 - 1

    def separate():
        return localizer(rgb, ela), streams(rgb, ela)

    def shared():
        blocks = localizer.fused(rgb, ela)
        return localizer.decode(blocks, rgb.shape[-2:]), streams.classify(blocks)

    def baseline():
        return localizer(rgb, ela), resnet(sela)

    with torch.no_grad():
        (a, (b, c)), (d, (e, f)) = separate(), shared()
        assert torch.allclose(a, d) and torch.allclose(b, e) and torch.allclose(c, f)
        times = {name: median_seconds(fn, args.runs) / args.batch
                 for name, fn in (("localizer + ResNet18 WCBnet (256 px)", baseline),
                                  ("localizer + streams WCBnet, two passes", separate),
                                  ("localizer + streams WCBnet, one encoder pass", shared))}
        encoder = median_seconds(lambda: localizer.fused(rgb, ela), args.runs) / args.batch
    torch.set_num_threads(threads)
    print(f"batch {args.batch}, {args.threads} thread(s), median of {args.runs} runs")
    print("| layout | ms / image | vs baseline |")
    print("|---|---|---|")
    base = times["localizer + ResNet18 WCBnet (256 px)"]
    for name, seconds in times.items():
        print(f"| {name} | {1000 * seconds:.1f} | {base / seconds:.2f}x |")
    print(f"| (the encoder alone: what sharing saves) | {1000 * encoder:.1f} | |")
    stage = stage_ms(args.stage_backend, args.batch, args.runs, args.threads)
    print(f"\nmodel stage (tamperscan.stages.Nets, {stage['weights']}), {args.stage_backend}, "
          f"batch {args.batch}, {args.threads} thread(s)")
    print("| stage | ms / image | vs two engines |")
    print("|---|---|---|")
    for name in ("two engines", "one shared graph"):
        print(f"| {name} | {stage[name]:.1f} | {stage['two engines'] / stage[name]:.2f}x |")
    return {"baseline_ms": 1000 * base,
            "separate_ms": 1000 * times["localizer + streams WCBnet, two passes"],
            "shared_ms": 1000 * times["localizer + streams WCBnet, one encoder pass"],
            "encoder_ms": 1000 * encoder,
            "stage_separate_ms": stage["two engines"],
            "stage_shared_ms": stage["one shared graph"]}


def stage_ms(spec: str, batch: int, runs: int, threads: int) -> dict:
    """ms per image of the Nets stage on decoded JPEGs: one shared graph vs two engines."""
    backend, _, precision = spec.partition("/")
    with tempfile.TemporaryDirectory() as folder:
        config, weights = with_weights(PipelineConfig().with_runtime(
            backend=backend, precision=precision or "fp32", threads=threads), Path(folder))
        images = [cv2.imencode(".jpg", fixtures.natural_image(480, 640, seed))[1].tobytes()
                  for seed in range(batch)]
        decoded = DecodeELA(config)(bytes_batch(images))
        shared = Nets(config)
        with mock.patch.object(net_stages, "shares_streams", lambda *models: False):
            separate = Nets(config)
    if not shared.shared or separate.shared:
        raise SystemExit("the shipped nets do not share their streams: nothing to compare")
    return {"weights": weights, **{
        name: 1000 * median_seconds(lambda s=stage: s(dict(decoded)), runs) / batch
        for name, stage in (("two engines", separate), ("one shared graph", shared))}}


if __name__ == "__main__":
    main()
