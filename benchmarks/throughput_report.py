"""benchmarks/throughput.py's arms compared: the ratios and targets, the plain-text report
and the Markdown section for RESULTS.md."""

from __future__ import annotations

import numpy as np

from benchmarks.common import markdown_table
from benchmarks.graph_stages import NAMES
from benchmarks.machine_info import shared_note
from benchmarks.throughput_profile import profile_lines

TARGET_VS_NAIVE, TARGET_VS_BOUND = 3.0, 0.85


def score_agreement(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest |score difference| between two arms over the images both scored."""
    common = [u for u in a if u in b and np.isfinite(a[u]) and np.isfinite(b[u])]
    return max((abs(a[u] - b[u]) for u in common), default=float("nan"))


def compare(result: dict) -> None:
    """Adds ``ratios`` (images/s of one arm over another) and, with the naive loop and Ray
    both run, ``max_score_diff`` to ``result``."""
    ratios = {}
    naive, bound, ray_ = result.get("naive"), result.get("bound"), result.get("ray")
    if ray_ and naive:
        ratios["ray/naive"] = ray_["images_per_s"] / naive["images_per_s"]
        result["max_score_diff"] = score_agreement(naive["scores"], ray_["scores"])
    if ray_ and bound:
        ratios["ray/bound"] = ray_["images_per_s"] / bound["images_per_s"]
    for run in result.get("ray_other", []):
        ratios[f"ray/ray ({run['layout']} layout)"] = ray_["images_per_s"] / run["images_per_s"]
    if naive and bound:
        ratios["naive/bound"] = naive["images_per_s"] / bound["images_per_s"]
    result["ratios"] = ratios


def arm_rows(result: dict) -> list[list[str]]:
    naive, bound, ray_ = result.get("naive"), result.get("bound"), result.get("ray")
    rows = []
    for run in [ray_, *result.get("ray_other", [])] if ray_ else []:
        rows.append([f"Ray Data, {run['layout']} layout (`pipeline.build_dataset`, batch "
                     f"{run['batch_size']}), from {run['timed_from']} to last row",
                     f"{run['images_per_s']:.2f}"])
        rows.append([f"Ray Data, {run['layout']} layout, end to end incl. actor start-up and "
                     "model loading", f"{run['end_to_end_images_per_s']:.2f}"])
    if naive:
        rows.append([f"naive loop (eager torch, batch 1, {naive['torch_threads']} threads)",
                     f"{naive['images_per_s']:.2f}"])
    if bound:
        rows.append([f"compute bound ({bound['cores']} cores / "
                     f"{1e3 * bound['sum_cpu_s_per_image']:.1f} CPU ms per image)",
                     f"{bound['images_per_s']:.2f}"])
    return rows


def targets_line(ratios: dict[str, float]) -> str:
    parts = []
    if "ray/naive" in ratios:
        met = "met" if ratios["ray/naive"] >= TARGET_VS_NAIVE else "NOT met"
        parts.append(f"ray/naive ≥ {TARGET_VS_NAIVE:g}: {met}")
    if "ray/bound" in ratios:
        met = "met" if ratios["ray/bound"] >= TARGET_VS_BOUND else "NOT met"
        parts.append(f"ray/bound ≥ {TARGET_VS_BOUND:g}: {met}")
    return "targets (issue #6): " + "; ".join(parts) if parts else ""


def report(result: dict) -> None:
    bound = result.get("bound")
    print(f"\nimages: {result['image_set']}\nweights: {result['weights']}")
    if bound:
        print(f"\ncompute bound, each stage alone, 1 thread, backends {bound['backends']}; "
              f"CPU ms per image (wall ms in brackets) per batch size:")
        total = bound["sum_cpu_s_per_image"]
        for name in NAMES:
            costs, walls = bound["cpu_s_per_image"][name], bound["wall_s_per_image"][name]
            best = bound["best_batch"][name]
            cells = "  ".join(f"b{b}: {1e3 * costs[b]:6.1f} ({1e3 * walls[b]:6.1f})"
                              for b in bound["batch_sizes"])
            print(f"  {name:<11}{cells}   best b{best}, {100 * costs[best] / total:4.1f} %")
    print()
    for name, rate in arm_rows(result):
        print(f"{name.replace('`', ''):<72}{rate:>8} images/s")
    for key, value in result["ratios"].items():
        print(f"{key}: {value:.2f}")
    if line := targets_line(result["ratios"]):
        print(line)
    if "max_score_diff" in result:
        print(f"max |score difference| naive vs Ray: {result['max_score_diff']:.2e}")
    ray_ = result.get("ray")
    if bound and ray_ and ray_["plan"].get("ray_cpus") not in (None, bound["cores"]):
        print(f"note: Ray saw {ray_['plan']['ray_cpus']:g} CPUs, the bound assumes "
              f"{bound['cores']} cores (os.cpu_count())")
    print("\nprofile:")
    for line in profile_lines(result):
        print(f"  - {line}")


def markdown(result: dict) -> str:
    info, bound = result["machine"], result.get("bound")
    v = info["versions"]
    out = ["## Throughput: Ray Data vs naive loop vs compute bound (`benchmarks/throughput.py`)",
           "",
           f"{info['date']} · {info['cpu']}, {info['logical_cores']} logical cores, "
           f"{info['ram_gib']:.0f} GiB RAM · python {v['python']}, torch {v['torch']}, "
           f"ray {v['ray']}, onnxruntime {v['onnxruntime']} · {shared_note(info)}",
           f"· `{info['command']}`",
           "",
           f"Images: {result['image_set']}. {result['weights']}.",
           "",
           markdown_table(["arm", "images/s"], arm_rows(result)),
           "",
           " · ".join(f"{k} **{val:.2f}**" for k, val in result["ratios"].items())]
    if line := targets_line(result["ratios"]):
        out += ["", line[0].upper() + line[1:] + "."]
    if bound:
        total = bound["sum_cpu_s_per_image"]
        rows = []
        for name in NAMES:
            best = bound["best_batch"][name]
            cost = bound["cpu_s_per_image"][name][best]
            rows.append([name, best, f"{1e3 * cost:.1f}",
                         f"{1e3 * bound['wall_s_per_image'][name][best]:.1f}",
                         f"{100 * cost / total:.0f} %"])
        out += ["", f"Compute bound: each stage alone, 1 thread, backends "
                    f"{', '.join(f'{k} {b}' for k, b in bound['backends'].items())}:", "",
                markdown_table(["stage", "best batch", "CPU ms/image", "wall ms/image",
                                "share"], rows)]
    out += ["", "Profile:", ""] + [f"- {line}" for line in profile_lines(result)]
    return "\n".join(out) + "\n"
