"""Training loops for the two-stream localizer and WCBnet, with checkpoints and resume.

The losses and optimisers follow the papers: two-stream = pixel BCE (+ Dice, for the heavy
class imbalance of small forged regions), Adam 1e-4; WCBnet = image-level BCE on all three
heads, SGD 1e-3 (momentum 0.9).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from tamperscan.nets.build import (
    build_model,
    load_config,
    load_localizer_streams,
    load_weights,
    parse_config,
    save_weights,
)
from tamperscan.preprocess.inputs import INPUT_COLUMNS
from tamperscan.train.data import SyntheticForgeries
from tamperscan.train.photos import load_photo_manifest, split_photos
from tamperscan.train.synth import ForgerySynthesizer
from tamperscan.train.synth_config import SynthConfig


@dataclass
class TrainSettings:
    net: str  # "two_stream" or "wcbnet"
    config: str  # model config name or path
    data_root: str  # folder with MANIFEST.csv of authentic photos
    out_dir: str  # checkpoints and logs
    steps: int = 1000
    batch_size: int = 8
    lr: float | None = None  # None: the paper's value for this net
    optimizer: str | None = None  # "adam" | "sgd"; None: the paper's (two-stream Adam, WCBnet SGD)
    seed: int = 0
    # Seed of the photo split, apart from ``seed``: the held-apart photos (and the validation
    # stream drawn from them) stay the same for every training seed, so runs with different
    # seeds are validated on -- and can be averaged against -- one split that none trained on.
    split_seed: int = 0
    val_samples: int = 64
    val_every: int = 200
    workers: int = 1
    train_size: int | None = None  # train at another resolution than the config's input size
    fp16_weights: bool = True
    copy_move_mask: str = "both"  # SynthConfig.copy_move_mask: "both" | "target"
    photometric: float = 0.0  # SynthConfig.p_photometric (CoMoFoD-style global changes)
    # Start from these weights (e.g. the shipped ones) instead of random initialisation;
    # ignored when resuming, where the checkpoint holds the weights.
    init_weights: str | None = None
    # Wall-clock budget: stop at the first step past it with a final validation and
    # checkpoint, so a lent GPU's fixed slice of time always ends with usable weights.
    max_minutes: float | None = None
    # WCBnet on the localizer's streams (``backbone: two_stream``): copy them from these
    # localizer weights before training, and with ``freeze_backbone`` train the heads only
    # (the streams then stay the localizer's, bit for bit).
    init_backbone: str | None = None
    freeze_backbone: bool = False
    # Also keep the weights of every validation step (OUT/weights/NET-stepN.safetensors), so
    # a checkpoint can be chosen afterwards on a validation split; otherwise only the latest.
    keep_weights: bool = False


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    union = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
    return (1 - (2 * inter + eps) / (union + eps)).mean()


def map_logit(logits: torch.Tensor) -> torch.Tensor:
    """Differentiable twin of ``stages.map_score``: the max of the logit map after a box
    blur of side/32, one logit per image."""
    k = max(3, logits.shape[-1] // 32) | 1
    return F.avg_pool2d(logits, k, stride=1).amax(dim=(1, 2, 3))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sample_sizes(cfg: dict, size: int) -> tuple[int, int]:
    """(rgb/ELA, signed ELA) sizes of a training sample for the net ``cfg`` at ``size``: the
    input it does not read is made at a token 32 px, unused."""
    return (32, size) if "signed_ela" in parse_config(cfg).input_names else (size, 32)


def net_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                device: torch.device | None = None):
    """The net's forward pass on a training batch (each net takes its own named inputs)."""
    return model(*(batch[INPUT_COLUMNS[name]].to(device) for name in model.config.input_names))


def _loss(
    net: str, model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device
) -> torch.Tensor:
    return _loss_of(net, net_forward(model, batch, device), batch, device)


def _loss_of(net: str, outputs, batch: dict[str, torch.Tensor],
             device: torch.device) -> torch.Tensor:
    """The paper's loss of the net's forward ``outputs`` on ``batch``."""
    if net == "two_stream":
        mask = batch["mask"].to(device)
        return F.binary_cross_entropy_with_logits(outputs, mask) + dice_loss(outputs, mask)
    logits, _ = outputs
    labels = batch["label"].to(device)[:, None].expand_as(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


@torch.no_grad()
def validate(
    net: str, model: torch.nn.Module, loader: DataLoader, device: torch.device
) -> dict[str, float]:
    """Held-apart photos: image AUC, and mean pixel F1@0.5 on forged samples (two-stream).
    One forward pass per batch gives the loss and the scores."""
    model.eval()
    losses, f1s, scores, labels = [], [], [], []
    for batch in loader:
        outputs = net_forward(model, batch, device)
        losses.append(float(_loss_of(net, outputs, batch, device)))
        labels += batch["label"].tolist()
        if net == "two_stream":
            prob = torch.sigmoid(outputs).cpu()
            scores += torch.sigmoid(map_logit(outputs)).cpu().tolist()
            for p, m, y in zip(prob, batch["mask"], batch["label"], strict=True):
                if y > 0:
                    pred, truth = p >= 0.5, m >= 0.5
                    tp = float((pred & truth).sum())
                    denom = float(pred.sum() + truth.sum())
                    f1s.append(2 * tp / denom if denom else 1.0)
        else:
            scores += torch.sigmoid(outputs[0]).mean(dim=1).cpu().tolist()
    model.train()
    metrics = {"val_loss": float(np.mean(losses))}
    if f1s:
        metrics["val_pixel_f1"] = float(np.mean(f1s))
    if len(set(labels)) == 2:
        metrics["val_image_auc"] = float(roc_auc_score(labels, scores))
    return metrics


def train(settings: TrainSettings, resume: bool = False, log=print,
          photos: list | None = None, model_config: dict | None = None) -> dict[str, float]:
    """Train one net; returns the last validation metrics. Reproducible from ``seed``.
    ``photos`` (e.g. in-memory photos) and ``model_config`` override the settings' data root
    and config name: tests train tiny nets on procedural photos with them."""
    seed_everything(settings.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = model_config or load_config(settings.config)
    size = settings.train_size or int(cfg["input_size"])
    ts_size, cb_size = sample_sizes(cfg, size)
    photos = photos or load_photo_manifest(Path(settings.data_root))
    train_photos, val_photos = split_photos(photos, seed=settings.split_seed)
    synth_config = SynthConfig(copy_move_mask=settings.copy_move_mask,
                               p_photometric=settings.photometric)
    train_set = SyntheticForgeries(
        ForgerySynthesizer(train_photos, seed=settings.seed, config=synth_config),
        settings.steps * settings.batch_size,
        ts_size,
        cb_size,
    )
    val_set = SyntheticForgeries(
        ForgerySynthesizer(val_photos, seed=settings.split_seed + 10_000, config=synth_config),
        settings.val_samples,
        ts_size,
        cb_size,
    )
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt"
    resuming = resume and ckpt_path.exists()
    model = build_model(cfg)
    if settings.init_weights and not resuming:  # a checkpoint holds its own weights
        load_weights(model, settings.init_weights)
        log(f"initialised from {settings.init_weights}")
    if settings.init_backbone and not resuming:
        copied = load_localizer_streams(model, settings.init_backbone)
        log(f"backbone: {copied} tensors from {settings.init_backbone}")
    if settings.freeze_backbone:
        model.freeze_backbone()
    model = model.to(device).train()
    paper = {"two_stream": ("adam", 1e-4), "wcbnet": ("sgd", 1e-3)}[settings.net]
    kind = settings.optimizer or paper[0]
    trained = [p for p in model.parameters() if p.requires_grad]
    lr = settings.lr if settings.lr is not None else paper[1]  # 0 is a rate, not "unset"
    if kind == "adam":
        opt = torch.optim.Adam(trained, lr=lr)
    else:
        opt = torch.optim.SGD(trained, lr=lr, momentum=0.9)
    step = 0
    if resuming:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        if settings.lr is not None:  # an explicit rate wins: lets a resumed run anneal
            for group in opt.param_groups:
                group["lr"] = lr
        log(f"resumed from step {step} (lr {opt.param_groups[0]['lr']:g})")
    # Items are indexed by global position, so a resumed run sees exactly the samples it
    # would have seen without the interruption.
    sampler = range(step * settings.batch_size, len(train_set))
    loader = DataLoader(
        train_set,
        batch_size=settings.batch_size,
        sampler=sampler,
        num_workers=settings.workers,
        persistent_workers=False,
    )
    # The training workers' count here too: a few hundred validation samples synthesised in
    # the main process would idle a GPU for seconds at every validation.
    val_loader = DataLoader(val_set, batch_size=settings.batch_size,
                            num_workers=settings.workers if settings.workers > 1 else 0)
    scaler_ctx = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    metrics: dict[str, float] = {}
    history = []
    start, running = time.perf_counter(), []
    deadline = (time.monotonic() + 60 * settings.max_minutes
                if settings.max_minutes is not None else None)
    for batch in loader:
        if scaler_ctx is not None:
            with scaler_ctx:
                loss = _loss(settings.net, model, batch, device)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss = _loss(settings.net, model, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step += 1
        running.append(loss.item())
        if step % 10 == 0:
            log(
                f"{settings.net} step {step}/{settings.steps} loss {np.mean(running):.4f} "
                f"({(time.perf_counter() - start) / len(running):.2f} s/step)"
            )
            history.append({"step": step, "loss": float(np.mean(running))})
            running, start = [], time.perf_counter()
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if step % settings.val_every == 0 or step == settings.steps or out_of_time:
            metrics = validate(settings.net, model, val_loader, device)
            log(f"{settings.net} step {step} " + json.dumps(metrics))
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "torch_rng": torch.get_rng_state(),
                    "settings": asdict(settings),
                },
                ckpt_path,
            )
            save_weights(model, out / f"{settings.net}.safetensors", fp16=settings.fp16_weights)
            if settings.keep_weights:
                kept = out / "weights" / f"{settings.net}-step{step}.safetensors"
                kept.parent.mkdir(exist_ok=True)
                shutil.copyfile(out / f"{settings.net}.safetensors", kept)
            with (out / "history.jsonl").open("a") as f:
                f.write(json.dumps({"step": step, **metrics, "train": history}) + "\n")
            history = []
        if out_of_time:
            log(f"{settings.net}: time budget of {settings.max_minutes:g} min reached at "
                f"step {step}")
            break
    return metrics
