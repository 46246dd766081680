"""Training on synthetic forgeries: loss falls, checkpoints round-trip, resume continues."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tamperscan.nets.build import build_model, load_config, load_weights, save_weights
from tamperscan.stages import map_score
from tamperscan.train.average import average_state_dicts, recompute_batchnorm
from tamperscan.train.data import SyntheticForgeries
from tamperscan.train.loop import TrainSettings, _loss, map_logit, train
from tamperscan.train.photos import procedural_photos
from tamperscan.train.synth import ForgerySynthesizer

TINY = {
    "two_stream": {**load_config("two_stream"), "input_size": 64, "width_multiplier": 0.25,
                   "ppm_channels": 16, "decoder_channels": 16, "skip_channels": 8},
    "wcbnet": {**load_config("wcbnet"), "input_size": 64, "embed_dim": 8, "attention_dim": 8},
}


@pytest.fixture(scope="module")
def photos():
    return procedural_photos(20, seed=3, height=96, width=128)


def _fixed_batch(net: str, photos) -> dict[str, torch.Tensor]:
    data = SyntheticForgeries(ForgerySynthesizer(photos, seed=99), 8, 64, 64)
    return {k: torch.stack([data[i][k] for i in range(8)]) for k in data[0]}


@pytest.mark.parametrize("net", ["two_stream", "wcbnet"])
def test_tiny_training_lowers_loss_and_checkpoint_round_trips(net, photos, tmp_path):
    torch.manual_seed(0)
    batch = _fixed_batch(net, photos)
    settings = TrainSettings(net=net, config=net, data_root="unused", out_dir=str(tmp_path),
                             steps=30, batch_size=4, lr=3e-3, val_samples=8, val_every=30,
                             workers=0, seed=0, fp16_weights=False)
    metrics = train(settings, log=lambda _: None, photos=photos, model_config=TINY[net])
    assert "val_loss" in metrics

    torch.manual_seed(0)  # train() seeds torch the same way before building its model
    before = build_model(TINY[net]).eval()
    after = build_model(TINY[net]).eval()
    load_weights(after, tmp_path / f"{net}.safetensors")
    with torch.no_grad():
        assert _loss(net, after, batch, torch.device("cpu")) < _loss(
            net, before, batch, torch.device("cpu"))

    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["step"] == 30
    reloaded = build_model(TINY[net])
    reloaded.load_state_dict(ckpt["model"])
    for (name, a), b in zip(after.state_dict().items(), reloaded.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 30


def test_resume_continues_from_checkpoint(photos, tmp_path):
    settings = TrainSettings(net="wcbnet", config="wcbnet", data_root="unused",
                             out_dir=str(tmp_path), steps=4, batch_size=2, val_samples=4,
                             val_every=2, workers=0, seed=1, fp16_weights=False)
    train(settings, log=lambda _: None, photos=photos, model_config=TINY["wcbnet"])
    logs: list[str] = []
    settings.steps = 6
    train(settings, resume=True, log=logs.append, photos=photos, model_config=TINY["wcbnet"])
    assert any("resumed from step 4" in line for line in logs)
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 6


def test_map_logit_is_the_differentiable_twin_of_the_served_image_score():
    logits = torch.randn(3, 1, 96, 96) * 3
    logits[1, 0, 10:20, 30:45] += 8  # a hot region
    scores = torch.sigmoid(map_logit(logits))
    # stages.map_score blurs probabilities, map_logit blurs logits: the same ranking and the
    # same hot spot; equal where the map is locally flat
    served = [map_score(torch.sigmoid(x[0]).numpy()) for x in logits]
    assert int(scores.argmax()) == int(np.argmax(served)) == 1
    flat = torch.full((1, 1, 64, 64), 1.5)
    assert float(torch.sigmoid(map_logit(flat))) == pytest.approx(
        map_score(torch.sigmoid(flat[0, 0]).numpy()), abs=1e-6)


def test_time_budget_stops_with_a_checkpoint_and_init_weights_fine_tune(photos, tmp_path):
    """A zero-minute budget stops after the first step yet leaves a validated checkpoint;
    a run started from those weights begins where they left off, not from scratch."""
    first = TrainSettings(net="wcbnet", config="wcbnet", data_root="unused",
                          out_dir=str(tmp_path / "a"), steps=50, batch_size=2, val_samples=4,
                          val_every=50, workers=0, seed=2, fp16_weights=False, max_minutes=0.0)
    logs: list[str] = []
    metrics = train(first, log=logs.append, photos=photos, model_config=TINY["wcbnet"])
    assert "val_loss" in metrics and any("time budget" in line for line in logs)
    assert torch.load(tmp_path / "a" / "last.pt", weights_only=False)["step"] == 1
    weights = tmp_path / "a" / "wcbnet.safetensors"

    second = TrainSettings(net="wcbnet", config="wcbnet", data_root="unused",
                           out_dir=str(tmp_path / "b"), steps=1, batch_size=2, val_samples=4,
                           val_every=1, workers=0, seed=3, fp16_weights=False, lr=0.0,
                           optimizer="sgd", init_weights=str(weights))
    logs = []
    train(second, log=logs.append, photos=photos, model_config=TINY["wcbnet"])
    assert any("initialised from" in line for line in logs)
    start, end = build_model(TINY["wcbnet"]), build_model(TINY["wcbnet"])
    load_weights(start, weights)
    load_weights(end, tmp_path / "b" / "wcbnet.safetensors")
    for (name, a), b in zip(start.state_dict().items(), end.state_dict().values(), strict=True):
        if a.is_floating_point() and "running" not in name:  # lr 0: weights unchanged
            assert torch.equal(a, b), name


def test_keep_weights_saves_every_validation_step(photos, tmp_path):
    settings = TrainSettings(net="wcbnet", config="wcbnet", data_root="unused",
                             out_dir=str(tmp_path), steps=2, batch_size=2, val_samples=4,
                             val_every=1, workers=0, seed=4, fp16_weights=False,
                             keep_weights=True)
    train(settings, log=lambda _: None, photos=photos, model_config=TINY["wcbnet"])
    kept = sorted((tmp_path / "weights").iterdir())
    assert [p.name for p in kept] == ["wcbnet-step1.safetensors", "wcbnet-step2.safetensors"]
    assert kept[1].read_bytes() == (tmp_path / "wcbnet.safetensors").read_bytes()
    assert kept[0].read_bytes() != kept[1].read_bytes()


def test_data_workers_change_neither_the_samples_nor_the_validation(photos, tmp_path):
    """Samples are made from their index alone, so synthesising them in worker processes
    (training and, since a GPU idled on it, validation too) gives the run it would have in
    the main process: the same weights and the same validation metrics."""
    runs = {}
    for workers in (0, 2):
        settings = TrainSettings(net="two_stream", config="two_stream", data_root="unused",
                                 out_dir=str(tmp_path / str(workers)), steps=2, batch_size=2,
                                 val_samples=4, val_every=2, workers=workers, seed=6,
                                 fp16_weights=False)
        runs[workers] = train(settings, log=lambda _: None, photos=photos,
                              model_config=TINY["two_stream"])
    assert runs[0] == runs[2]
    weights = [load_file(str(tmp_path / w / "two_stream.safetensors")) for w in ("0", "2")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_average_of_checkpoints_is_their_mean_and_loads_into_the_net():
    cfg = load_config("two_stream")
    nets = [build_model(cfg) for _ in range(2)]
    with torch.no_grad():
        for offset, net in zip((0.0, 1.0), nets, strict=True):
            for p in net.parameters():
                p.fill_(offset)
    states = [{k: v.clone() for k, v in net.state_dict().items()} for net in nets]
    averaged = average_state_dicts(states)
    merged = build_model(cfg)
    merged.load_state_dict(averaged)  # same keys, shapes and dtypes
    for name, value in merged.named_parameters():
        assert torch.allclose(value, torch.full_like(value, 0.5)), name
    counters = [k for k, v in averaged.items() if not v.is_floating_point()]
    for key in counters:  # BatchNorm's num_batches_tracked: the larger, not a mean
        assert torch.equal(averaged[key], torch.maximum(states[0][key], states[1][key]))
    with pytest.raises(ValueError, match="different tensors"):
        average_state_dicts([states[0], {"other": torch.zeros(1)}])


def test_batchnorm_statistics_are_re_estimated_on_the_given_batches(photos):
    model = build_model(TINY["two_stream"])
    data = SyntheticForgeries(ForgerySynthesizer(photos, seed=7), 8, 64, 64)
    first_bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.all(first_bn.running_mean == 0)  # fresh statistics
    recompute_batchnorm(model, torch.utils.data.DataLoader(data, batch_size=4))
    assert not model.training
    assert first_bn.running_mean.abs().sum() > 0
    assert first_bn.num_batches_tracked == 2


def test_training_seed_does_not_move_the_held_apart_photos(photos, tmp_path, monkeypatch):
    """Runs with different seeds must validate on (and may be averaged against) one split
    none of them trained on; only ``split_seed`` moves it."""
    import tamperscan.train.loop as loop

    made: list[tuple[list[int], int]] = []
    real = loop.ForgerySynthesizer

    def recording(photo_list, seed, config=None):
        made.append(([id(p) for p in photo_list], seed))
        return real(photo_list, seed=seed, config=config)

    monkeypatch.setattr(loop, "ForgerySynthesizer", recording)

    def streams(seed: int, split_seed: int = 0):
        made.clear()
        settings = TrainSettings(net="wcbnet", config="wcbnet", data_root="unused",
                                 out_dir=str(tmp_path / f"{seed}-{split_seed}"), steps=1,
                                 batch_size=2, val_samples=2, val_every=1, workers=0,
                                 seed=seed, split_seed=split_seed, fp16_weights=False)
        train(settings, log=lambda _: None, photos=photos, model_config=TINY["wcbnet"])
        (train_ids, train_seed), (val_ids, val_seed) = made
        return set(train_ids), train_seed, set(val_ids), val_seed

    a_train, a_seed, a_val, a_val_seed = streams(seed=2)
    b_train, b_seed, b_val, b_val_seed = streams(seed=5)
    assert a_val and not a_val & a_train
    assert (b_train, b_val, b_val_seed) == (a_train, a_val, a_val_seed)
    assert b_seed != a_seed  # the training stream does follow the seed
    c_train, _, c_val, _ = streams(seed=2, split_seed=1)
    assert c_val != a_val and not c_val & c_train


def test_heads_train_on_the_localizers_frozen_streams(photos, tmp_path):
    """--init-backbone copies a localizer's streams in, --freeze-backbone keeps them (weights
    and BatchNorm statistics) bit for bit while the heads learn."""
    localizer = build_model(TINY["two_stream"])
    for module in localizer.modules():  # statistics a fresh net would not have
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    save_weights(localizer, tmp_path / "localizer.safetensors")
    cfg = {**TINY["wcbnet"], "backbone": "two_stream", "width_multiplier": 0.25}
    settings = TrainSettings(net="wcbnet", config="unused", data_root="unused",
                             out_dir=str(tmp_path / "run"), steps=6, batch_size=4,
                             optimizer="adam", lr=1e-2, val_samples=4, val_every=6,
                             workers=0, fp16_weights=False,
                             init_backbone=str(tmp_path / "localizer.safetensors"),
                             freeze_backbone=True)
    train(settings, log=lambda _: None, photos=photos, model_config=cfg)
    trained = build_model(cfg)
    load_weights(trained, tmp_path / "run" / "wcbnet.safetensors")
    streams = {k: v for k, v in localizer.state_dict().items()
               if k.startswith(("rgb_stream.", "ela_stream."))}
    for key, value in streams.items():
        assert torch.equal(trained.state_dict()[f"backbones.0.{key}"], value), key
    fresh = build_model(cfg)
    assert any(not torch.equal(a, b) for (k, a), b in
               zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True)
               if k.startswith("heads."))
