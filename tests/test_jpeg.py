"""JPEG-domain evidence (tamperscan.jpeg, stage JpegEvidence): an aligned and a non-aligned
(cropped between the two compressions) double-JPEG splice are found and located, single
compression is not flagged, and every odd kind of file
(progressive, CMYK, odd sizes, restart markers, truncated, non-JPEG) is handled row by row."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tamperscan.batch import bytes_batch, mark_error
from tamperscan.config import PipelineConfig
from tamperscan.fixtures import natural_image
from tamperscan.jpeg import jpeg_findings, upright_map
from tamperscan.jpeg.nonaligned import grid_shift, noise_sigma
from tamperscan.jpeg.read import truncated
from tamperscan.jpeg.tables import fingerprint, ijg_table
from tamperscan.stages import DecodeELA
from tamperscan.stages.jpeg import JpegEvidence
from tamperscan.train.compression import jpeg_recompress

SIZE = 512
BOX = (slice(160, 320), slice(200, 360))  # the pasted patch, 8-px aligned


def jpeg(rgb: np.ndarray, quality: int, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def spliced(first: int | None, crop: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Host compressed at ``first`` (None: never), then cropped by ``crop`` (dy, dx) pixels
    (which moves the first 8x8 grid off the final one), an uncompressed patch of another
    image pasted into it: what the final save compresses once (patch) or twice (host)."""
    dy, dx = crop
    host = natural_image(SIZE + 8, SIZE + 8, seed=0)
    if first is not None:
        host = jpeg_recompress(host, first)
    host = np.ascontiguousarray(host[dy:dy + SIZE, dx:dx + SIZE])
    host[BOX] = natural_image(SIZE, SIZE, seed=7)[BOX]
    return host


def truth(size: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[BOX] = 1
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    return PipelineConfig()


@pytest.fixture(scope="module")
def decoder(config):
    return DecodeELA(config)


def run(decoder, config, files: list[bytes]) -> dict:
    """DecodeELA's output plus the original bytes (what the graph hands the stage)."""
    batch = bytes_batch(files)
    return JpegEvidence(config)({**decoder(batch), "data": batch["data"]})


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def double_splice() -> bytes:
    return jpeg(spliced(60), 90)


def test_aligned_double_jpeg_splice_found_and_located(decoder, config, double_splice):
    single = jpeg(spliced(None), 90)
    out = run(decoder, config, [double_splice, single])
    assert list(out["status"]) == ["ok", "ok"]
    assert out["score_jpeg"][0] >= 0.5 and out["jpeg_double"][0]
    assert abs(int(out["jpeg_quality"][0]) - 60) <= 5  # the primary quality
    assert out["jpeg_table"][0] == "ijg:q90"
    s = out["rgb"].shape[1]
    assert out["jpeg_map"].shape == (2, s, s) and out["jpeg_map"].dtype == np.float16
    assert iou(out["jpeg_map"][0].astype(np.float32) >= 0.5, truth(s)) >= 0.6
    # Compressed once: nothing found, so no score at all (only a found region counts), and
    # the quality is the stored one.
    assert out["score_jpeg"][1] == 0 and not out["jpeg_double"][1]
    assert out["jpeg_quality"][1] == 90 and not out["jpeg_map"][1].any()
    assert np.all(out["t_jpeg"] > 0)


def test_nonaligned_double_jpeg_splice_found_and_located(decoder, config):
    """Cropped by (3, 5) px between the two saves: the first grid sits at (5, 3) of the
    stored one; the host carries the quality-60 lattice there, the pasted patch does not."""
    assert grid_shift(decode(spliced(60, (3, 5))))[:2] == (5, 3)
    out = run(decoder, config, [jpeg(spliced(60, (3, 5)), 90), jpeg(spliced(None, (3, 5)), 90)])
    assert out["score_jpeg"][0] >= 0.5 and out["jpeg_double"][0]
    assert abs(int(out["jpeg_quality"][0]) - 60) <= 5
    s = out["rgb"].shape[1]
    assert iou(out["jpeg_map"][0].astype(np.float32) >= 0.5, truth(s)) >= 0.6
    assert out["score_jpeg"][1] == 0 and not out["jpeg_double"][1]


def decode(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    """The luma plane a decoder gives for ``rgb`` saved at ``quality`` (float, 0..255)."""
    with Image.open(io.BytesIO(jpeg(rgb, quality))) as image:
        return np.asarray(image.convert("L"), np.float32)


@pytest.mark.parametrize("crop", [(1, 0), (0, 7), (4, 4), (6, 2)])
def test_grid_shift_finds_the_first_grid(crop):
    dy, dx = crop
    assert grid_shift(decode(spliced(70, crop)))[:2] == ((8 - dy) % 8, (8 - dx) % 8)


def test_noise_sigma_by_hand():
    """On the stored grid a frequency sees its own step only: sqrt(Q^2/12 + 2/12). With one
    step Q everywhere, any shift sees the same (the shifted basis' energy is spread over
    orthonormal stored bases that all carry Q^2/12)."""
    table = ijg_table(75)
    np.testing.assert_allclose(noise_sigma(table, 0, 0), np.sqrt(table ** 2 / 12 + 2 / 12))
    flat = np.full(64, 6)
    for dy, dx in [(3, 5), (0, 2), (4, 4)]:
        np.testing.assert_allclose(noise_sigma(flat, dy, dx), np.sqrt(36 / 12 + 2 / 12))


def test_region_follows_exif_orientation(decoder, config):
    """The grid is read in the stored orientation; the map must land on the upright image
    the other stages see (orientation 6: the viewer rotates 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg(spliced(60), 90, exif=exif.tobytes())
    out = run(decoder, config, [data])
    s = out["rgb"].shape[1]
    upright = np.rot90(truth(s), -1)  # clockwise
    assert out["score_jpeg"][0] >= 0.5
    assert iou(out["jpeg_map"][0].astype(np.float32) >= 0.5, upright) >= 0.6


def test_progressive_and_restart_markers_are_read(decoder, config):
    pixels = spliced(60)
    progressive = jpeg(pixels, 90, progressive=True)
    ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [
        cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    restart = encoded.tobytes()
    assert ok and b"\xff\xdd" in restart  # a DRI marker: restart intervals are in the file
    out = run(decoder, config, [progressive, restart])
    assert list(out["status"]) == ["ok", "ok"]
    for i in range(2):
        assert out["score_jpeg"][i] >= 0.5 and out["jpeg_table"][i] == "ijg:q90"
        found = out["jpeg_map"][i].astype(np.float32) >= 0.5
        assert iou(found, truth(out["rgb"].shape[1])) >= 0.6


def test_cmyk_greyscale_and_odd_sizes_handled(decoder, config):
    rgb = natural_image(203, 157, seed=3)
    files = [_save(Image.fromarray(rgb).convert("CMYK"), 80),
             _save(Image.fromarray(rgb).convert("L"), 80),
             jpeg(rgb, 85),                       # not a multiple of 8 or 16
             jpeg(rgb[:7, :13], 85),              # tiny: less than two blocks a side
             jpeg(rgb[:1, :1], 85)]
    out = run(decoder, config, files)
    assert list(out["status"]) == ["ok"] * 5, list(out["error"])
    assert out["jpeg_table"][0] == "ijg:q80" and out["jpeg_quality"][0] == 80  # CMYK
    assert out["jpeg_table"][1] == "ijg:q80"  # greyscale: one table
    assert list(out["jpeg_table"][2:]) == ["ijg:q85"] * 3
    assert np.all(out["score_jpeg"] < 0.5) and not out["jpeg_double"].any()
    assert out["score_jpeg"][3] == 0 and out["score_jpeg"][4] == 0  # too small for statistics


def _save(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_truncated_non_jpeg_and_unreadable_are_no_evidence(decoder, config, double_splice):
    cut = double_splice[: len(double_splice) // 2]
    assert truncated(cut) and not truncated(double_splice)
    png = io.BytesIO()
    Image.fromarray(natural_image(64, 64)).save(png, "PNG")
    garbage = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    batch = bytes_batch([cut, png.getvalue(), garbage])
    decoded = {**DecodeELA(config)(batch), "data": batch["data"]}
    # Whatever the decoder said of them, force the rows "ok": the stage must cope alone.
    decoded["status"] = np.array(["ok"] * 3, dtype=object)
    out = JpegEvidence(config)(decoded)
    assert list(out["status"]) == ["ok"] * 3
    assert out["jpeg_table"][0] == "ijg:q90;truncated" and out["jpeg_quality"][0] == 90
    assert out["jpeg_table"][1] == "" and out["jpeg_quality"][1] == -1
    assert out["jpeg_table"][2] == "unreadable"
    assert not out["score_jpeg"].any() and not out["jpeg_map"].any()
    assert not out["jpeg_double"].any()


def test_failed_rows_skipped_and_failures_marked_per_row(decoder, config, double_splice,
                                                         monkeypatch):
    batch = bytes_batch([double_splice, double_splice, double_splice])
    decoded = {**decoder(batch), "data": batch["data"]}
    mark_error(decoded, 0, "corrupt", "earlier stage")
    calls = []

    def flaky(data: bytes, *args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return jpeg_findings(data, *args)

    monkeypatch.setattr("tamperscan.stages.jpeg.jpeg_findings", flaky)
    out = JpegEvidence(config)(decoded)
    assert list(out["status"]) == ["error", "error", "ok"]
    assert out["error"][0] == "corrupt: earlier stage"
    assert out["error"][1].startswith("internal: JPEG evidence failed: RuntimeError")
    assert decoded["status"][1] == "ok"  # the caller's batch is not written
    assert out["score_jpeg"][2] >= 0.5 and out["score_jpeg"][0] == 0


def test_table_fingerprints():
    rgb = natural_image(64, 64)
    assert jpeg_findings(jpeg(rgb, 75)).table == "ijg:q75"
    camera = [np.clip(ijg_table(85) + np.arange(64) % 3, 1, 255).tolist(),
              ijg_table(85, chroma=True).tolist()]
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", qtables=camera)  # a camera maker's own table
    found = jpeg_findings(buffer.getvalue())
    assert found.table.startswith("nonstandard:") and len(found.table) == 12 + 8
    assert 80 <= found.quality <= 90  # the nearest IJG quality
    assert fingerprint([ijg_table(50), ijg_table(50, chroma=True)]) == "ijg:q50"


def test_upright_map_matches_pillow_transpositions():
    height, width = 37, 53
    cells = np.arange(height * width, dtype=np.float32).reshape(height, width)
    methods = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
               6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
               8: Image.Transpose.ROTATE_90}
    size = 120
    centres = (np.arange(size) + 0.5) / size
    for orientation in range(1, 9):
        shown = cells if orientation == 1 else np.asarray(
            Image.fromarray(cells).transpose(methods[orientation]))
        expected = shown[(centres * shown.shape[0]).astype(int)][
            :, (centres * shown.shape[1]).astype(int)]
        got = upright_map(cells, height, width, orientation, size, cell=1)
        np.testing.assert_array_equal(got, expected, err_msg=f"orientation {orientation}")
