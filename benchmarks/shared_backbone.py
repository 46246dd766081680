"""What one encoder pass for both nets would save: the localizer plus a WCBnet on its streams
(``models/wcbnet.yaml``) run as two nets, against one pass of the localizer's encoder
whose fused blocks feed both the localizer's decoder and WCBnet's heads
(``TwoStreamEncoder.fused`` -> ``TwoStreamLocalizer.decode`` + ``WCBNet.classify``). The
ResNet18 WCBnet over signed ELA at 256 px beside the localizer (the layout before the streams
WCBnet) is measured in the same run as the baseline.

Usage: .venv/bin/python benchmarks/shared_backbone.py [--batch 8] [--runs 5] [--threads 1]

CPU, eval mode, torch.no_grad, random inputs; median of ``--runs`` timed runs after a warm-up.
Both layouts give the same outputs (checked before timing); frozen streams make the WCBnet's
backbone the localizer's, which is what makes the shared pass exact.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine_info import machine_info, print_header  # noqa: E402
from benchmarks.nets import median_seconds  # noqa: E402
from tamperscan.nets import build_model, load_config  # noqa: E402

RESNET18 = {"arch": "wcbnet", "input_size": 256, "backbone": "resnet18", "head_blocks": [2, 3, 4],
            "embed_dim": 64, "attention_dim": 32, "separate_backbones": False}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
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
    return {"baseline_ms": 1000 * base,
            "separate_ms": 1000 * times["localizer + streams WCBnet, two passes"],
            "shared_ms": 1000 * times["localizer + streams WCBnet, one encoder pass"],
            "encoder_ms": 1000 * encoder}


if __name__ == "__main__":
    main()
