"""`tamperscan` command line: thin wrappers over the package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tamperscan.cli_serve import serve_command
from tamperscan.cluster import init_ray
from tamperscan.config import PipelineConfig, S3Options, load_pipeline_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Find manipulated images and show where they were tampered with.")
console = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="YAML file with PipelineConfig fields (thresholds, weights, segmenter).")]
EndpointOption = Annotated[str | None, typer.Option(
    "--s3-endpoint", envvar="AWS_ENDPOINT_URL", help="S3 endpoint, e.g. http://127.0.0.1:8333")]


@app.command()
def scan(
    source: Annotated[str, typer.Argument(help="Local folder, s3://bucket/prefix, or a "
                                               ".parquet/.csv manifest with a 'uri' column.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder or s3:// prefix.")],
    config: ConfigOption = None,
    s3_endpoint: EndpointOption = None,
    heatmaps: Annotated[bool, typer.Option(help="Also write heatmap PNGs.")] = False,
    batch_size: Annotated[int, typer.Option(help="Rows per batch.")] = 8,
    model_batch_size: Annotated[int, typer.Option(
        help="Rows per batch of the model stages in the staged layout (0: --batch-size on "
             "CPUs, at least 32 on GPUs).")] = 0,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
    layout: Annotated[str, typer.Option(
        help="auto (fused without GPUs, staged with), fused (every stage in one actor per "
             "CPU) or staged (decode tasks feeding model actors).")] = "auto",
) -> None:
    """Scan every image under SOURCE; re-running with the same --out resumes."""
    from tamperscan.pipeline import ScanFailed, ScanResources
    from tamperscan.pipeline import scan as run_scan

    if layout not in ("auto", "fused", "staged"):
        raise typer.BadParameter("layout must be auto, fused or staged", param_hint="--layout")
    pipeline_config = load_pipeline_config(
        config, runtime={"write_heatmaps": True} if heatmaps else None)
    init_ray(num_cpus)
    try:
        summary = run_scan(source, out, pipeline_config, S3Options(endpoint_url=s3_endpoint),
                           ScanResources(batch_size=batch_size, layout=layout,
                                         model_batch_size=model_batch_size))
    except ScanFailed as exc:  # a clear line and exit 1, not a Ray traceback
        Console(stderr=True).print(f"[bold red]scan failed:[/] {exc}", markup=True,
                                   highlight=False)
        raise typer.Exit(1) from None
    table = Table(title=f"tamperscan: {source}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("inputs", str(summary.total))
    table.add_row("already done (skipped)", str(summary.skipped_done))
    table.add_row("processed in this run", str(summary.processed))
    for kind, count in sorted(summary.errors_by_kind.items()):
        table.add_row(f"  error: {kind}", str(count))
    for status, count in sorted(summary.counts.items()):
        table.add_row(f"output rows with status {status}", str(count))
    table.add_row(f"flagged as tampered (score >= {summary.tamper_threshold:.4f})",
                  str(summary.flagged))
    table.add_row("images/s", f"{summary.images_per_second:.2f}")
    Console().print(table)
    point = pipeline_config.operating_point
    Console().print("operating point: " + (point.summary() if point else
                                           "tamper_threshold set by hand (not calibrated)"))
    Console().print(f"results: {out.rstrip('/')}/results  (Parquet; summary.json beside it)")


DEFAULT_TRAIN_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


@app.command()
def train(
    net: Annotated[str, typer.Argument(help="two_stream or wcbnet")],
    out: Annotated[Path, typer.Option("--out", help="Run folder: checkpoints, logs, weights.")],
    config: Annotated[str | None, typer.Option(help="Model config name or path.")] = None,
    data: Annotated[Path, typer.Option(help="Authentic photos (MANIFEST.csv).",
                                       envvar="TAMPERSCAN_TRAIN_DATA")] = DEFAULT_TRAIN_DATA,
    steps: int = 1000,
    batch_size: int = 8,
    lr: Annotated[float | None, typer.Option(help="Default: the paper's value.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam or sgd (default: paper's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the training stream.")] = 0,
    split_seed: Annotated[int, typer.Option(
        help="Seed of the train/validation photo split (keep it across runs).",
    )] = 0,
    train_size: Annotated[int | None, typer.Option(help="Train at another size.")] = None,
    val_every: int = 200,
    val_samples: Annotated[int, typer.Option(
        help="Validation samples drawn from the held-apart photos.")] = 64,
    workers: int = 1,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    copy_move_mask: Annotated[str, typer.Option(
        help="Copy-move ground truth: 'both' (source + target, as CoMoFoD/NoSo) or 'target'.",
    )] = "both",
    photometric: Annotated[float, typer.Option(
        help="Probability of a CoMoFoD-style global change (brightness, contrast, blur, "
             "noise, colour reduction) after the forgery; 0 reproduces the shipped weights.",
    )] = 0.0,
    init_weights: Annotated[Path | None, typer.Option(
        help="Start from these weights (e.g. models/two_stream.safetensors) to fine-tune.",
    )] = None,
    max_minutes: Annotated[float | None, typer.Option(
        help="Stop (validate + checkpoint) at the first step past this wall-clock budget.",
    )] = None,
    keep_weights: Annotated[bool, typer.Option(
        help="Keep every validation step's weights (OUT/weights/) to choose one afterwards.",
    )] = False,
    init_backbone: Annotated[Path | None, typer.Option(
        help="WCBnet on the localizer's streams: copy them from these localizer weights.",
    )] = None,
    freeze_backbone: Annotated[bool, typer.Option(
        help="Train WCBnet's heads only (the backbone keeps its weights and statistics).",
    )] = False,
) -> None:
    """Train a net on synthetic forgeries made on the fly from authentic photos."""
    from tamperscan.train.loop import TrainSettings
    from tamperscan.train.loop import train as run_train

    if net not in ("two_stream", "wcbnet"):
        raise typer.BadParameter("net must be two_stream or wcbnet")
    settings = TrainSettings(net=net, config=config or net, data_root=str(data),
                             out_dir=str(out), steps=steps, batch_size=batch_size, lr=lr,
                             optimizer=optimizer,
                             seed=seed, split_seed=split_seed, train_size=train_size,
                             val_every=val_every, val_samples=val_samples,
                             workers=workers, copy_move_mask=copy_move_mask,
                             photometric=photometric,
                             init_weights=str(init_weights) if init_weights else None,
                             init_backbone=str(init_backbone) if init_backbone else None,
                             freeze_backbone=freeze_backbone,
                             max_minutes=max_minutes, keep_weights=keep_weights)
    metrics = run_train(settings, resume=resume, log=console.print)
    print(json.dumps(metrics))


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Folder with MANIFEST.csv (image,mask,label).")],
    out: Annotated[Path, typer.Option("--out", help="JSON report path.")],
    config: ConfigOption = None,
    robustness: Annotated[bool, typer.Option(
        help="Also score after JPEG 95/85/75/50 and resizing by 0.75/0.5.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N manifest rows.")] = None,
) -> None:
    """Pixel and image metrics of every method and baseline on one dataset."""
    from tamperscan.evaluate import evaluate as run_evaluate
    from tamperscan.evaluate import markdown_table, write_report

    pipeline_config = load_pipeline_config(config)
    report = run_evaluate(dataset, pipeline_config, robustness=robustness, limit=limit,
                          progress=console.print)
    write_report(report, out)
    print(markdown_table(report))


@app.command()
def compare(
    base: Annotated[Path, typer.Argument(help="Report JSON, or a folder of them.")],
    candidate: Annotated[Path, typer.Argument(help="Report(s) of the candidate, same images.")],
    method: Annotated[str, typer.Option(help="Which method's outputs to compare.")] = "final",
    samples: Annotated[int, typer.Option(min=100, help="Bootstrap samples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Is the candidate better? Paired bootstrap of each metric's difference per dataset and
    for the mean over datasets (`tamperscan evaluate` reports on the same images)."""
    from tamperscan.compare import compare as run_compare
    from tamperscan.compare import load_reports, markdown

    try:
        a, b = load_reports(base), load_reports(candidate)
        result = run_compare(a, b, method, samples, seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    skipped = sorted(set(a) ^ set(b))
    if skipped:
        console.print(f"only on one side, not compared: {', '.join(skipped)}")
    print(markdown(result, method))


@app.command()
def calibrate(
    source: Annotated[str, typer.Argument(help="Authentic images: a folder, s3://bucket/prefix "
                                               "or a manifest with a 'uri' column.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibrated config (YAML).")],
    false_alarm_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of authentic images that may be flagged.")] = 0.05,
    config: ConfigOption = None,
    s3_endpoint: EndpointOption = None,
    scan_out: Annotated[str | None, typer.Option(
        help="Keep the calibration scan here (default: a temporary folder).")] = None,
    describe: Annotated[str | None, typer.Option(
        help="What the authentic images are, recorded with the operating point "
             "(default: SOURCE).")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs for a local Ray.")] = None,
) -> None:
    """Set tamper_threshold so that at most --false-alarm-rate of SOURCE's authentic images
    are flagged; writes a config to pass to scan/serve/evaluate/report with --config."""
    import yaml

    from tamperscan.calibration import calibrate as run_calibrate
    from tamperscan.calibration import check_source, write_calibration
    from tamperscan.operating_point import CalibrationError

    base = (yaml.safe_load(config.read_text()) or {}) if config else {}
    base.pop("tamper_threshold", None)
    base.pop("operating_point", None)
    pipeline_config = load_pipeline_config(config)
    s3 = S3Options(endpoint_url=s3_endpoint)
    try:
        check_source(source, s3)
        init_ray(num_cpus)
        calibrated, point = run_calibrate(source, false_alarm_rate, pipeline_config, s3,
                                          scan_out=scan_out, describe=describe)
    except CalibrationError as exc:
        Console(stderr=True).print(f"[bold red]calibration failed:[/] {exc}", markup=True,
                                   highlight=False)
        raise typer.Exit(2) from None
    write_calibration(calibrated, out, base)
    console.print(f"tamper_threshold {calibrated.tamper_threshold:.6f}: {point.summary()}")
    print(out)


@app.command()
def explain(
    image: Annotated[Path, typer.Argument(help="An image file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the overlay PNGs.")],
    config: ConfigOption = None,
) -> None:
    """Overlays for one image: ELA, each CAM view, fused CAM, chosen region, final mask."""
    from tamperscan.explain import explain as run_explain

    summary = run_explain(image.read_bytes(), out, load_pipeline_config(config))
    print(json.dumps(summary, indent=2))


@app.command()
def report(
    results: Annotated[str, typer.Argument(help="The --out folder (or s3:// prefix) of a scan.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (open index.html).")]
    = Path("report"),
    config: ConfigOption = None,
    s3_endpoint: EndpointOption = None,
    top_k: Annotated[int, typer.Option(
        "--top-k", help="Images (thumbnail, heatmap, mask) for this many top flagged rows.")] = 500,
    rows_per_page: Annotated[int, typer.Option(help="Rows per page in the browser.")] = 50,
    workers: Annotated[int | None, typer.Option(help="Threads for the preview images.")] = None,
) -> None:
    """Static HTML report of a scan: summary, score histogram, filterable rows, previews."""
    from tamperscan.report import build_report

    info = build_report(results, out, load_pipeline_config(config),
                        S3Options(endpoint_url=s3_endpoint), top_k=top_k,
                        rows_per_page=rows_per_page, workers=workers)
    console.print(f"{info.rows} rows, {info.pages} data pages, {info.images} previews "
                  f"in {info.seconds:.1f} s")
    print(info.index)


@app.command()
def version() -> None:
    """Print the package version and the shipped model versions."""
    from tamperscan import __version__
    from tamperscan.provenance import model_versions

    print(json.dumps({"tamperscan": __version__,
                      "models": model_versions(PipelineConfig())}))


app.command("serve")(serve_command)

if __name__ == "__main__":
    app()
