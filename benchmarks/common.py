"""The shared body of each benchmark script: header, ``measure``, report and Markdown, JSON.

A script supplies ``parse_args`` and ``measure(args, info)``; ``run_benchmark`` prints the
machine header (`benchmarks.machine_info`), runs it and writes ``--out-json``;
``finish_report`` prints the script's own report and its Markdown section for RESULTS.md.
The scripts put the repository root on ``sys.path``, so this imports as ``benchmarks.common``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from benchmarks.machine_info import load_average, machine_info, print_header


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def finish_report(result: dict, info: dict, report: Callable[[dict], None],
                  markdown: Callable[[dict], str]) -> dict:
    """The shared tail of each script's measure(): end load average, the script's own
    plain-text report, then its Markdown section for RESULTS.md (kept in the result)."""
    info.setdefault("load_average_end", [round(v, 2) for v in load_average()])
    one, five, _ = info["load_average_end"]
    print(f"\nos.getloadavg() at end: {one:.2f} {five:.2f}")
    report(result)
    result["markdown"] = markdown(result)
    print("\n---- Markdown for benchmarks/RESULTS.md ----\n")
    print(result["markdown"])
    return result


def run_benchmark(script: str, parse_args, measure, argv: list[str] | None = None) -> dict:
    """Header, ``measure(args, info)``, optional JSON: the shared body of each script's main().
    Restores this process's torch/OpenCV thread settings, since tests call main() in-process."""
    import cv2
    import torch

    args = parse_args(argv)
    info = machine_info([sys.argv[0] if argv is None else script,
                         *(sys.argv[1:] if argv is None else argv)])
    print_header(info)
    threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        result = measure(args, info)
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out_json}")
    return result
