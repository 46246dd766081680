"""The graph's rules, and the promise that new evidence is one stage class plus one line."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tamperscan import graph
from tamperscan.batch import Batch, bytes_batch, ok_rows, size, with_row_state
from tamperscan.config import PipelineConfig
from tamperscan.graph import cascade, final_mask, image_score, noisy_or
from tamperscan.results import output_schema, to_table
from tests.corpus import encode, natural_image
from tests.helpers import random_weights_config


def test_noisy_or_lets_any_evidence_raise_the_score():
    assert noisy_or(np.array([0.5]), np.array([0.0]))[0] == pytest.approx(0.5)
    assert noisy_or(np.array([0.5]), np.array([0.5]), np.array([0.5]))[0] == pytest.approx(
        0.875)
    batch = {"score_two_stream": np.array([0.2, 0.2]), "score_wcbnet": np.array([0.4, 0.4]),
             "score_copy_move": np.array([0.0, 0.6]), "score_jpeg": np.array([0.0, 0.0])}
    assert image_score(batch) == pytest.approx([0.3, 1 - 0.7 * 0.4])


def test_cascade_needs_ok_rows_a_high_score_and_an_active_refinement():
    scores, ok = np.array([0.1, 0.5, 0.9]), np.array([True, True, False])
    active = PipelineConfig(refine={"threshold": 0.3, "cam_weight": 0.5})
    assert list(cascade(scores, ok, active)) == [False, True, False]
    inactive = PipelineConfig(refine={"threshold": 0.3, "cam_weight": 0.0})
    assert not cascade(scores, ok, inactive).any()  # weight 0 cannot change the output


def test_final_mask_takes_exact_regions_first_and_only_in_tampered_images():
    config = PipelineConfig(mask_threshold=0.5)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 0.9
    clone = np.zeros((4, 4), np.float32)
    clone[3, 3] = 1.0
    assert not final_mask(heat, False, config, [clone]).any()
    assert final_mask(heat, True, config, [clone]).sum() == 1 and final_mask(
        heat, True, config, [clone])[3, 3]
    assert final_mask(heat, True, config, [np.zeros_like(clone)])[0, 0]  # no clone: the map
    assert final_mask(heat, True, config).sum() == 1


class QuarterEvidence:
    """A made-up evidence stage: flags the top-left quarter of every image with 0.9."""

    kind, timing = "cpu", "t_quarter"
    score_column, region_column = "score_quarter", "quarter_map"

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config

    def __call__(self, batch: Batch) -> Batch:
        n, s = size(batch), batch["rgb"].shape[1]
        region = np.zeros((n, s, s), np.float16)
        region[:, : s // 2, : s // 2] = 0.9
        region[~ok_rows(batch)] = 0
        return {**with_row_state(batch), "quarter_map": region,
                "score_quarter": np.where(ok_rows(batch), 0.9, 0.0).astype(np.float32),
                "t_quarter": np.zeros(n, np.float32)}


def test_new_evidence_is_one_stage_class_plus_one_line(tmp_path, monkeypatch):
    """Adding QuarterEvidence to EVIDENCE (and so to STAGES, which is derived from it) is all
    it takes: its score joins the image score by noisy-OR, its region the heatmap by max,
    and its columns reach the output schema."""
    config = random_weights_config(tmp_path)
    images = bytes_batch([encode(natural_image(64, 96, 1), "PNG"), b"not an image"])
    before = graph.analyse(graph.build_stages(config), dict(images))

    monkeypatch.setattr(graph, "EVIDENCE", (*graph.EVIDENCE, QuarterEvidence))  # the line
    monkeypatch.setattr(graph, "STAGES", (graph.DecodeELA, *graph.EVIDENCE, graph.Score,
                                          graph.Refine, graph.Fuse))
    after = graph.analyse(graph.build_stages(config), dict(images))
    assert list(after["status"]) == ["ok", "error"]
    assert after["score"][0] == pytest.approx(1 - (1 - before["score"][0]) * 0.1, abs=1e-6)
    assert after["score_quarter"][0] == pytest.approx(0.9)
    s = after["heatmap"].shape[1]
    assert (after["heatmap"][0][: s // 2, : s // 2] >= np.float16(0.9)).all()
    assert np.array_equal(after["heatmap"][0][s // 2:], before["heatmap"][0][s // 2:])
    assert {"score_quarter", "t_quarter"} <= set(output_schema().names)
    table = to_table({**after, "heatmap_path": None}, "run", [None, None])
    assert table.column("score_quarter").type == pa.float32()
    assert "quarter_map" not in after  # an intermediate: Fuse drops it


def test_output_columns_are_named_once():
    """A score an evidence stage joins is an output column already: listing it again among
    its findings would give the Parquet schema a duplicate name (pyarrow then refuses to
    read the results)."""
    names = output_schema().names
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_wcbnet_inputs_follow_its_backbone(tmp_path):
    """A WCBnet on the localizer's streams reads the localizer's inputs: the decoder makes
    no signed ELA, Nets (and the endpoint's call to its deployment) reads rgb + ela, and
    its CAM reaches refinement; the ResNet WCBnet reads signed ELA."""
    import torch
    import yaml

    from tamperscan.nets.build import build_model, load_config, save_weights
    from tamperscan.stages import Nets, input_sizes

    base = random_weights_config(tmp_path)
    streams = {**load_config("wcbnet"), "backbone": "two_stream", "input_size": 384,
               "embed_dim": 8, "attention_dim": 4}
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump(streams))
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({**streams, "input_size": 256}))
    torch.manual_seed(0)
    save_weights(build_model(streams), tmp_path / "streams.safetensors")
    config = base.model_copy(update={"wcbnet_config": str(tmp_path / "streams.yaml"),
                                     "wcbnet_weights": str(tmp_path / "streams.safetensors")})
    assert Nets.reads(config) == ("rgb", "ela")
    assert input_sizes(config) == (384, 0)
    paper = base.model_copy(update={"wcbnet_config": "wcbnet_paper"})
    assert Nets.reads(paper) == ("rgb", "ela", "sela") and input_sizes(paper) == (384, 384)
    with pytest.raises(ValueError, match="takes its size"):
        input_sizes(base.model_copy(update={"wcbnet_config": str(tmp_path / "small.yaml")}))

    images = bytes_batch([encode(natural_image(80, 120, 2), "JPEG"), b"not an image"])
    stages = graph.build_stages(config, inspect=True)
    decoded = stages[0](dict(images))
    assert "sela" not in decoded
    out = graph.analyse(stages, dict(images))
    assert list(out["status"]) == ["ok", "error"]
    assert out["cam"].shape == (2, 96, 96) and out["cam"][0].max() > 0
    assert out["refined"][0] and out["refined_map"][0].any()


def test_the_staged_layout_carries_the_file_only_to_its_last_reader(tmp_path):
    """The JPEG stage is the last evidence stage that reads the original bytes; wrapped for
    the staged layout it hands on everything else it computes, without ``data``."""
    from tamperscan.pipeline import dropping_file
    from tamperscan.stages import DecodeELA, JpegEvidence

    _, evidence, _ = graph.split(graph.STAGES)
    assert evidence[graph.last_file_reader(evidence)] is JpegEvidence
    assert graph.last_file_reader([graph.Score, graph.Fuse]) == -1
    config = PipelineConfig()
    decoded = DecodeELA(config)(bytes_batch([encode(natural_image(64, 80, 5), "JPEG")]))
    plain = JpegEvidence(config)(dict(decoded))
    wrapped_cls = dropping_file(JpegEvidence)
    assert wrapped_cls.__name__ == "JpegEvidence"
    wrapped = wrapped_cls(config)(dict(decoded))
    assert "data" in plain and "data" not in wrapped
    assert set(plain) - set(wrapped) == {"data"}
    assert str(wrapped["jpeg_table"][0]).startswith("ijg:")
