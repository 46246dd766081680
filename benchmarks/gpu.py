"""Model-level GPU figures for issue #6, in one device call: both shipped nets in eager fp32
(the baseline, measured in the same run), channels_last, fp16 / bf16 autocast, CUDA graphs
and torch.compile, at several batch sizes; and the ELA round trip with JPEG encode/decode on
the GPU (torchvision.io) against Pillow/libjpeg-turbo on one CPU core.

    bash scripts/gpu.sh bench                              # on a lent GPU, one device call
    .venv/bin/python benchmarks/gpu.py --device cpu --batches 1 --runs 2   # smoke test here

Images/s = batch / median batch time after warm-up (CUDA-synchronised). Random inputs,
shipped weights (timing does not depend on the values). The nets are the graph's model stages
(``tamperscan.stages.NETS``) with the shipped PipelineConfig's configs and weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.nets import median_seconds  # noqa: E402
from tamperscan.config import PipelineConfig  # noqa: E402
from tamperscan.engines import build_engine  # noqa: E402
from tamperscan.export import io_names  # noqa: E402
from tamperscan.nets.build import load_config  # noqa: E402
from tamperscan.preprocess.ela import ELA_QUALITY, jpeg_roundtrip  # noqa: E402
from tamperscan.stages import NETS as GRAPH_NETS  # noqa: E402
from tamperscan.stages import load_net as load_graph_net  # noqa: E402

#: net config name -> the graph's net (``tamperscan.stages.NETS``), as the shipped config has them.
_SHIPPED = PipelineConfig()
NETS = {getattr(_SHIPPED, net.config_attr): net for net in GRAPH_NETS}


def load_net(name: str) -> torch.nn.Module:
    """The net ``name`` of ``NETS`` with its shipped weights, in eval mode, on the CPU."""
    return load_graph_net(_SHIPPED, NETS[name])


def timed(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    """benchmarks.nets.median_seconds of ``fn`` made synchronous, after two more warm-up
    calls (cuDNN autotuning, compile and graph capture take more than one)."""
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    call()
    call()
    return median_seconds(call, runs)


def _compiled(cl_model: torch.nn.Module, cl_inputs: tuple[torch.Tensor, ...]):
    # Default mode: max-autotune's kernel search costs minutes per shape, more than a
    # lent GPU's slice can give one benchmark.
    compiled = torch.compile(cl_model)

    def run_compiled():
        with torch.autocast("cuda", dtype=torch.float16):
            return compiled(*cl_inputs)
    return run_compiled


def _graph_replay(cl_model: torch.nn.Module, cl_inputs: tuple[torch.Tensor, ...]):
    """A CUDA graph of the fp16 forward: one launch per batch instead of one per kernel.
    Warm-up on a side stream, then capture; autocast's weight cache off, as PyTorch advises
    for capture (the batch-8 replay failure in RESULTS.md happened with and without it)."""
    static = tuple(x.clone() for x in cl_inputs)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.autocast("cuda", dtype=torch.float16,
                                                   cache_enabled=False):
        for _ in range(3):
            cl_model(*static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.autocast("cuda", dtype=torch.float16,
                                                 cache_enabled=False):
        cl_model(*static)
    return graph.replay


def variants(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device,
             compile_it: bool, with_graph: bool = True) -> dict[str, Callable[[], object]]:
    """name -> a call running one batch; every variant computes the same forward pass."""
    out: dict[str, Callable[[], object]] = {"eager fp32": lambda: model(*inputs)}
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_inputs = tuple(x.contiguous(memory_format=torch.channels_last) for x in inputs)
    out["channels_last fp32"] = lambda: cl_model(*cl_inputs)
    if device.type != "cuda":
        return out
    for dtype, label in ((torch.float16, "fp16"), (torch.bfloat16, "bf16")):
        def autocast(dtype=dtype):
            with torch.autocast("cuda", dtype=dtype):
                return cl_model(*cl_inputs)
        out[f"channels_last {label} autocast"] = autocast
    if with_graph:
        out["CUDA graph fp16"] = _graph_replay(cl_model, cl_inputs)
    if compile_it:
        out["torch.compile fp16"] = _compiled(cl_model, cl_inputs)
    return out


def net_rows(args: argparse.Namespace, device: torch.device, compile_pass: bool,
             save: Callable[[], None], rows: list[dict]) -> None:
    """Appends to ``rows`` (saved after each one, so a time limit keeps what was measured).
    The torch.compile variants come in a pass of their own, after every other variant: each
    compile takes a minute or more."""
    eager = {(r["net"], r["batch"]): r["ms_per_batch"] / 1e3 for r in rows
             if r["variant"] == "eager fp32"}
    for name in NETS:
        model = load_net(name).to(device)
        input_names, _ = io_names(model)
        size = int(load_config(name)["input_size"])
        for batch in args.compile_batches if compile_pass else args.batches:
            inputs = tuple(torch.rand(batch, 3, size, size, device=device) for _ in input_names)
            with torch.inference_mode():
                calls = variants(model, inputs, device, compile_pass,
                                 with_graph=not compile_pass and batch in args.graph_batches)
                if compile_pass:
                    calls = {k: v for k, v in calls.items() if "compile" in k}
                base = eager.get((name, batch))
                for label, call in calls.items():
                    seconds = timed(call, args.runs, device)
                    base = base or seconds
                    rows.append({"net": name, "batch": batch, "variant": label,
                                 "ms_per_batch": seconds * 1e3, "images_per_s": batch / seconds,
                                 "vs_eager_fp32": base / seconds})
                    print(f"{name} b{batch} {label}: {batch / seconds:.1f} images/s "
                          f"({base / seconds:.2f}x eager fp32)", flush=True)
                    save()


def engine_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The nets as the pipeline's model stages run them: ``build_engine`` (torch backend,
    channels_last, eager) called with float32 NumPy batches, so host-to-device copies of the
    inputs and the copies back are in the time, which the model-level rows above leave out
    (a batch of 32 localizer inputs is 57 MB of float32)."""
    rows = []
    precisions = ("fp32", "fp16") if device.type == "cuda" else ("fp32",)
    rng = np.random.default_rng(0)
    for name in NETS:
        model = load_net(name)
        for precision in precisions:
            engine = build_engine(model, "torch", precision=precision, device=str(device),
                                  compile=False)
            for batch in args.engine_batches:
                inputs = {n: rng.random((batch, 3, engine.input_size, engine.input_size),
                                        dtype=np.float32) for n in engine.input_names}
                seconds = timed(lambda inputs=inputs, engine=engine: engine(inputs),
                                args.runs, device)
                rows.append({"net": name, "precision": precision, "batch": batch,
                             "images_per_s": batch / seconds})
                print(f"engine {name} {precision} b{batch}: {batch / seconds:.1f} images/s "
                      "(NumPy in and out)", flush=True)
    return rows


def ela_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """ELA round trip (encode q90, decode, |difference|) of one 1024x768 photo-like image."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (48, 64, 3), np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((1024, 768), Image.Resampling.BICUBIC))

    def pillow() -> np.ndarray:  # the pipeline's own round trip (pinned codec settings)
        return np.abs(rgb.astype(np.int16) - jpeg_roundtrip(rgb))

    rows = [{"ela": "Pillow (libjpeg-turbo), 1 CPU thread", "batch": 1,
             "ms_per_image": timed(pillow, args.runs, torch.device("cpu")) * 1e3}]
    if device.type == "cuda":
        for batch in args.batches:
            images = [torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)
                      for _ in range(batch)]
            seconds = timed(lambda images=images: gpu_ela(images, device), args.runs, device)
            rows.append({"ela": "torchvision.io encode/decode_jpeg on the GPU",
                         "batch": batch, "ms_per_image": seconds / batch * 1e3})
        try:  # never run yet (written after the first lease): keep the timings if it fails
            rows[1]["parity"] = gpu_ela_parity(device)
        except Exception as exc:
            rows[1]["parity"] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"GPU ELA vs the pipeline's ELA: {rows[1]['parity']}", flush=True)
    base = rows[0]["ms_per_image"]
    for row in rows:
        row["vs_pillow"] = base / row["ms_per_image"]
        print(f"ELA {row['ela']} b{row['batch']}: {row['ms_per_image']:.2f} ms/image "
              f"({row['vs_pillow']:.2f}x Pillow)", flush=True)
    return rows


def gpu_ela(images: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """|x - JPEG(x)| of CHW uint8 CUDA images, encoded and decoded by nvJPEG at the pipeline's
    quality; the compressed bytes go through the host, as they would after a read."""
    from torchvision.io import decode_jpeg, encode_jpeg

    encoded = encode_jpeg(images, quality=ELA_QUALITY)
    decoded = decode_jpeg([e.cpu() for e in encoded], device=device)
    return [(a.short() - b.short()).abs() for a, b in zip(images, decoded, strict=True)]


def gpu_ela_parity(device: torch.device) -> dict:
    """Whether GPU JPEG could replace the pipeline's ELA for the shipped nets: the absolute
    error levels (grey levels, 0-255) of one bundled photo through ``gpu_ela`` against
    ``preprocess.ela.jpeg_roundtrip`` (libjpeg-turbo, 4:2:0), which the nets were trained
    on. Different encoders quantise and round differently; this measures how much."""
    rgb = np.asarray(Image.open(ROOT / "samples/images/authentic_000.png").convert("RGB"))
    cpu = np.abs(rgb.astype(np.int16) - jpeg_roundtrip(rgb))
    image = torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)
    gpu = gpu_ela([image], device)[0].permute(1, 2, 0).cpu().numpy()
    gap = np.abs(gpu.astype(np.int32) - cpu)
    return {"mean_level_cpu": float(cpu.mean()), "mean_level_gpu": float(gpu.mean()),
            "mean_abs_gap": float(gap.mean()), "max_gap": int(gap.max()),
            "equal_fraction": float((gap == 0).mean()),
            "correlation": float(np.corrcoef(cpu.ravel(), gpu.ravel())[0, 1])}


def markdown(result: dict) -> str:
    """The figures as the Markdown tables of RESULTS.md: one row per net and batch, one
    column per variant (images/s, and the ratio to eager fp32 of the same batch)."""
    labels = list(dict.fromkeys(r["variant"] for r in result["nets"]))
    lines = ["| net | batch | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for net in NETS:
        for batch in sorted({r["batch"] for r in result["nets"] if r["net"] == net}):
            cells = {r["variant"]: f"{r['images_per_s']:.0f} ({r['vs_eager_fp32']:.2f}×)"
                     for r in result["nets"] if r["net"] == net and r["batch"] == batch}
            lines.append(f"| {net} | {batch} | "
                         + " | ".join(cells.get(v, "–") for v in labels) + " |")
    if result.get("engines"):
        lines += ["", "| engine (NumPy in and out) | precision | batch | images/s |",
                  "|---|---|---|---|"]
        lines += [f"| {r['net']} | {r['precision']} | {r['batch']} | {r['images_per_s']:.0f} |"
                  for r in result["engines"]]
    lines += ["", "| ELA round trip (1024×768) | batch | ms/image | vs Pillow |",
              "|---|---|---|---|"]
    lines += [f"| {r['ela']} | {r['batch']} | {r['ms_per_image']:.2f} | "
              f"{r['vs_pillow']:.2f}× |" for r in result["ela"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-compile", action="store_true", help="torch.compile takes minutes")
    parser.add_argument("--compile-batches", type=int, nargs="+", default=[32],
                        help="batch sizes that also get a torch.compile variant (a compile "
                             "per net and shape)")
    parser.add_argument("--graph-batches", type=int, nargs="*", default=[1],
                        help="batch sizes that get the CUDA-graph variant (on the H200, "
                             "torch 2.11, its replay at batch 8 hit an illegal memory "
                             "access, which ends the CUDA context: RESULTS.md, GPU)")
    parser.add_argument("--engine-batches", type=int, nargs="+", default=[8, 32],
                        help="batch sizes of the engine rows (the pipeline's model stages)")
    parser.add_argument("--skip-nets", action="store_true",
                        help="only the ELA rows and the compile pass")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    machine = {"command": " ".join([sys.executable, *sys.argv]),
               "python": platform.python_version(), "torch": torch.__version__,
               "device": args.device,
               "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(json.dumps(machine))
    result: dict = {"machine": machine, "nets": [], "ela": []}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))

    if not args.skip_nets:
        net_rows(args, device, False, save, result["nets"])
        result["engines"] = engine_rows(args, device)
        save()
    result["ela"] = ela_rows(args, device)
    save()
    if device.type == "cuda" and not args.skip_compile:
        net_rows(args, device, True, save, result["nets"])
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
