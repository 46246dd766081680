"""Validate and calibrate the JPEG evidence rule (`tamperscan.jpeg.evidence.Rule`).

Positives: synthetic double-JPEG splices made by the repo's synthesiser from the photos held
apart from training (host re-saved at q1, donor pasted, final JPEG save at q2; aligned and
1-7 px shifted grids as the synthesiser draws them). Negatives: the real photos as stored
(held-apart photos and every camera original in the manifest: single-compressed camera files,
web photos that were recompressed), the same photos re-saved as a platform re-serves them
(quality 95 / 85 / 75: authentic, but now double-compressed), and synthetic authentic
double-JPEGs (no splice). For each candidate rule the evidence threshold is the lowest one
with <= 1 % false alarms on each of the three; the rule finding the most double-compressed
splices wins. The analysts' "compressed more than once" threshold is set at <= 1 % of the
camera originals (single-compressed by construction). Prints the detection rates and the
chosen `Rule`. With --robustness, the
chosen rule is also applied after what platforms do to uploads -- recompression at quality
95 / 85 / 75, a 0.75x resize re-saved at quality 85 -- to the splices and the real photos.

    .venv/bin/python scripts/calibrate_jpeg.py --count 300 --authentic 300 [--robustness]
"""

from __future__ import annotations

import argparse
import io
import itertools
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from tamperscan.jpeg.evidence import RULE, Rule, block_evidence, decide, describe
from tamperscan.jpeg.read import NotJpeg, UnreadableJpeg, read_coefficients
from tamperscan.operating_point import threshold_for_rate
from tamperscan.train.photos import load_photo_manifest, split_photos
from tamperscan.train.synth import ForgerySynthesizer, SynthConfig

CAMERA_SOURCES = ("camera_originals_mei", "dresden_prnu")
#: What a platform does to an upload: (resize factor, JPEG quality of the re-save).
PLATFORMS = {"recompress q95": (1.0, 95), "recompress q85": (1.0, 85),
             "recompress q75": (1.0, 75), "resize 0.75x + q85": (0.75, 85)}


def platform(data: bytes, factor: float, quality: int) -> bytes:
    """The file as a platform would re-serve it: decoded, optionally resized, re-saved."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if factor != 1.0:
        image = image.resize((max(8, round(image.width * factor)),
                              max(8, round(image.height * factor))), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
#: Qualities platforms re-serve uploads at: the real photos re-saved at each are negatives.
SERVED = (95, 85, 75)
SWEEP = {"window": (3, 5, 7), "region_llr": (0.25, 0.5, 1.0), "double_gain": (0.2, 0.3, 0.5, 1.0)}


def evidence_of(data: bytes):
    """(describe(...), BlockEvidence | None) of one file, or None when not applicable."""
    try:
        coef = read_coefficients(data)
    except (NotJpeg, UnreadableJpeg):
        return None
    if coef.truncated:
        return None
    return describe(coef), block_evidence(coef)


def threshold_at(negatives: np.ndarray, rate: float = 0.01) -> float:
    """Lowest evidence threshold (score >= threshold flags) with at most ``rate`` of the
    negatives flagged: the operating point's own rule (`operating_point.threshold_for_rate`),
    kept above 0 so that files without evidence are never flagged."""
    return max(threshold_for_rate(negatives, rate),
               float(np.nextafter(np.float32(0), np.float32(1))))


def scores(items, rule: Rule) -> np.ndarray:
    out = []
    for item in items:
        if item is None or item[1] is None:
            out.append(0.0)
            continue
        found = decide(replace(item[0]), item[1], rule)
        out.append(found.features["evidence"])
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared/data/train")
    parser.add_argument("--count", type=int, default=300, help="synthetic double-JPEG splices")
    parser.add_argument("--authentic", type=int, default=300,
                        help="synthetic authentic double-JPEGs (negatives)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--robustness", action="store_true",
                        help="also score the chosen rule after platform recompression/resize")
    args = parser.parse_args()

    photos = load_photo_manifest(args.data)
    _, held_apart = split_photos(photos, seed=args.split_seed)
    real = {p.image_path: p for p in held_apart}
    real.update({p.image_path: p for p in photos if p.source in CAMERA_SOURCES})
    chain = {"p_host_recompress": 1.0, "format_weights": {"JPEG": 1.0}}
    splices = ForgerySynthesizer(held_apart, seed=args.seed + 30_000, config=SynthConfig(
        kind_weights={"splice": 1.0}, **chain))
    authentic = ForgerySynthesizer(held_apart, seed=args.seed + 40_000, config=SynthConfig(
        kind_weights={"authentic": 1.0}, **chain))

    start, cost = time.perf_counter(), []
    with threadpool_limits(1):
        def timed(data: bytes):
            t = time.perf_counter()
            item = evidence_of(data)
            cost.append(time.perf_counter() - t)
            return item

        real_bytes = [Path(path).read_bytes() for path in real]
        real_items = [timed(data) for data in real_bytes]
        real_names = [Path(path).name for path in real]
        # What a platform re-serves: authentic, and double-compressed by the platform's save.
        served = [timed(platform(data, 1.0, quality)) for quality in SERVED for data in real_bytes]
        auth_items = [timed(authentic.sample(i).image_bytes) for i in range(args.authentic)]
        pos, info, pos_bytes = [], [], []
        for i in range(args.count):
            sample = splices.sample(i)
            pos.append(timed(sample.image_bytes))
            info.append(sample.info)
            pos_bytes.append(sample.image_bytes)
    print(f"{len(real_items)} real photos ({sum(p.source in CAMERA_SOURCES for p in real.values())}"
          f" camera originals; {len(served)} re-served at quality {SERVED}), {len(auth_items)} "
          f"synthetic authentic double-JPEGs, "
          f"{len(pos)} synthetic double-JPEG splices in {time.perf_counter() - start:.0f} s; "
          f"analysis {1e3 * np.mean(cost):.1f} ms/image mean, {1e3 * np.median(cost):.1f} median")

    kept = np.array([i.get("resize") is None for i in info])  # a global resize wipes the q1 grid
    aligned = np.array([tuple(i.get("grid_shift", (0, 0))) == (0, 0) for i in info]) & kept
    finer = np.array([i["q2"] > i["q1"] for i in info])
    groups = {"double-JPEG splices (no global resize)": kept,
              "  aligned grid": aligned, "  shifted grid": kept & ~aligned,
              "  aligned, q2 > q1": aligned & finer, "  aligned, q2 <= q1": aligned & ~finer,
              "all splices incl. resized": np.ones(len(info), bool)}

    results = []
    for values in itertools.product(*SWEEP.values()):
        rule = Rule(**dict(zip(SWEEP, values, strict=True)))
        neg_real, neg_served, neg_auth, positive = (
            scores(x, rule) for x in (real_items, served, auth_items, pos))
        cut = max(threshold_at(neg_real), threshold_at(neg_served), threshold_at(neg_auth))
        results.append(((positive[kept] >= cut).mean(), rule, cut, neg_real, neg_served,
                        neg_auth, positive))
    results.sort(key=lambda r: -r[0])
    print("\nrule sweep (detection of double-JPEG splices at <= 1 % FA):")
    for rate, rule, cut, *_ in results[:8]:
        print(f"  {rate:6.1%}  window={rule.window} region_llr={rule.region_llr} "
              f"double_gain={rule.double_gain}  threshold={cut:.1f} nats")
    rate, rule, cut, neg_real, neg_served, neg_auth, positive = results[0]
    camera = np.array([p.source in CAMERA_SOURCES for p in real.values()])
    per_block = {name: np.array([0.0 if x is None or x[1] is None else
                                 decide(replace(x[0]), x[1], rule).features["gain_per_block"]
                                 for x in items])
                 for name, items in (("real", real_items), ("auth", auth_items), ("pos", pos))}
    double_call = round(threshold_at(per_block["real"][camera]), 2)
    chosen = replace(rule, at_half=max(round(cut, 1), 0.1), scale=RULE.scale,
                     double_call=double_call)
    print(f"\nchosen: {chosen}")
    print(f"false alarms: real photos {(neg_real >= cut).sum()}/{len(neg_real)}, re-served "
          f"{(neg_served >= cut).sum()}/{len(neg_served)}, synthetic authentic "
          f"{(neg_auth >= cut).sum()}/{len(neg_auth)}")
    for name, mask in groups.items():
        print(f"  {name:42s} {(positive[mask] >= cut).mean():6.1%} of {mask.sum()}")
    real_only = threshold_at(neg_real)
    print(f"at the real-photos-only threshold ({real_only:.1f} nats): synthetic authentic "
          f"false alarms {(neg_auth >= real_only).mean():.1%}, double-JPEG splices found "
          f"{(positive[kept] >= real_only).mean():.1%}")
    synthetic = np.concatenate([per_block["auth"], per_block["pos"][kept]])
    print(f"'compressed more than once' at >= {double_call} nats/block (<= 1 % of the "
          f"{camera.sum()} camera originals): synthetic double-JPEGs "
          f"{(synthetic >= double_call).mean():.1%}, other real photos "
          f"{(per_block['real'][~camera] >= double_call).sum()}/{(~camera).sum()}")
    worst = np.argsort(neg_real)[::-1][:5]
    print("highest real-photo evidence:",
          ", ".join(f"{real_names[i]}={neg_real[i]:.1f}" for i in worst))
    if chosen != RULE:
        print(f"current tamperscan.jpeg.evidence.RULE = {RULE}: update it to the chosen rule")
    if args.robustness:
        print("\nrobustness (chosen rule and threshold; splices without a global resize):")
        kept_bytes = [b for b, k in zip(pos_bytes, kept, strict=True) if k]
        with threadpool_limits(1):
            for name, (factor, quality) in PLATFORMS.items():
                found = scores([evidence_of(platform(b, factor, quality)) for b in kept_bytes],
                               chosen)
                alarms = scores([evidence_of(platform(b, factor, quality))
                                 for b in real_bytes], chosen)
                print(f"  {name:20s} splices found {(found >= cut).mean():6.1%}, real photos "
                      f"flagged {(alarms >= cut).sum()}/{len(alarms)}")


if __name__ == "__main__":
    main()
