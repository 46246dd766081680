"""Average the weights of several checkpoints of one run (stochastic weight averaging over the
weights `tamperscan train --keep-weights` keeps, or a two-checkpoint "soup"), optionally with
BatchNorm statistics re-estimated on synthetic training samples.

Why: one run's snapshots along a flat loss lie in one basin; their mean usually generalises
better than any one of them, at no inference cost. On the sixth session's photometric run the
mean of steps 4 000-13 000 beat every single checkpoint on the validation split
(MODEL_CARD.md, seventh session). Float tensors are averaged in float64 and stored in the
first file's dtypes; integer counters take the maximum.

    .venv/bin/python scripts/average_weights.py OUT.safetensors runs/X/weights/*.safetensors \
        --bn-samples 320 --photometric 0.3 --copy-move-mask target
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from tamperscan.nets.build import build_model, load_config
from tamperscan.train.average import average_state_dicts, recompute_batchnorm
from tamperscan.train.data import SyntheticForgeries
from tamperscan.train.loop import sample_sizes
from tamperscan.train.photos import load_photo_manifest, split_photos
from tamperscan.train.synth import ForgerySynthesizer, SynthConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("weights", type=Path, nargs="+", help=".safetensors files")
    parser.add_argument("--net", default="two_stream", choices=["two_stream", "wcbnet"])
    parser.add_argument("--bn-samples", type=int, default=0,
                        help="re-estimate BatchNorm statistics on this many synthetic "
                             "samples from the training photos (0: average them too)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/train"))
    parser.add_argument("--train-size", type=int, default=224)
    parser.add_argument("--photometric", type=float, default=0.0)
    parser.add_argument("--copy-move-mask", default="both")
    parser.add_argument("--seed", type=int, default=123,
                        help="synthesis seed of the BatchNorm samples")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="the run's photo split (`tamperscan train --split-seed`)")
    args = parser.parse_args()
    states = [load_file(str(path)) for path in args.weights]
    averaged = average_state_dicts(states)
    if args.bn_samples:
        torch.set_num_threads(1)
        model = build_model(load_config(args.net))
        model.load_state_dict(averaged)
        # never the held-apart photos
        train_photos, _ = split_photos(load_photo_manifest(args.data), seed=args.split_seed)
        samples = SyntheticForgeries(
            ForgerySynthesizer(train_photos, seed=args.seed,
                               config=SynthConfig(copy_move_mask=args.copy_move_mask,
                                                  p_photometric=args.photometric)),
            args.bn_samples, *sample_sizes(load_config(args.net), args.train_size))
        recompute_batchnorm(model, DataLoader(samples, batch_size=8))
        averaged = {k: v.to(averaged[k].dtype).contiguous()
                    for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(averaged, str(args.out))
    bn = f", BatchNorm on {args.bn_samples} samples" if args.bn_samples else ""
    print(f"wrote {args.out}: mean of {len(args.weights)} checkpoints{bn}")


if __name__ == "__main__":
    main()
