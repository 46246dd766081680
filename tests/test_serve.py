"""The online endpoint on local Ray Serve, called over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import importlib
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import ray
import yaml
from PIL import Image
from ray import serve
from ray.serve import Application

from tamperscan.batch import bytes_batch
from tamperscan.config import PipelineConfig, S3Options
from tamperscan.graph import Fuse, analyse, build_stages, split
from tamperscan.render import heat_levels, rle_decode, rle_encode
from tamperscan.serve import ReplicaOptions, ServeSettings, build_app
from tamperscan.serve_auth import AuthConfigError, KeyChecker, load_api_keys
from tamperscan.serve_response import DECODE_STATUS
from tamperscan.serve_service import concat_batches, merge_outputs, split_batch
from tamperscan.stages import Refine
from tests.corpus import encode, make_corpus, natural_image
from tests.helpers import decode_png, random_weights_config, read_results
from tests.reliability_report import http_outcome
from tests.s3server import ACCESS_KEY, SECRET_KEY, free_port, serve_buckets
from tests.test_copy_move import paste, scene

pytestmark = pytest.mark.slow  # Ray Serve and an S3 server

KEY = "serve-test-key-0123456789abcdef"
MAX_IMAGE_BYTES = 1_000_000
MAX_BODY_BYTES = 1_200_000
TIMEOUT = httpx.Timeout(180.0)


def jpeg(seed: int, height: int = 56, width: int = 80) -> bytes:
    return encode(natural_image(height, width, seed), "JPEG", quality=88)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    # An explicit backend: "auto" measures per process, and the comparison with the
    # in-process stages needs the same numerics on both sides.
    return random_weights_config(tmp_path_factory.mktemp("weights"), runtime={"threads": 1},
                                 max_image_bytes=MAX_IMAGE_BYTES)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = serve_buckets(tmp_path_factory.mktemp("seaweed"), jpeg(7))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def endpoint(config, s3, tmp_path_factory):
    """The app with tiny queues (so a small burst overflows them) on a free loopback port."""
    keys_file = tmp_path_factory.mktemp("secrets") / "api-keys"
    keys_file.write_text(f"# one key per line\n{KEY}\n")
    tiny = {"num_replicas": 1, "num_cpus": 0.25, "num_gpus": 0}
    settings = ServeSettings(
        pipeline=config, api_keys_file=str(keys_file), allowed_buckets=["allowed"],
        s3=S3Options(endpoint_url=s3.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                     region="us-east-1"),
        max_body_bytes=MAX_BODY_BYTES, max_batch_size=1,
        ingress=ReplicaOptions(max_ongoing_requests=3, max_queued_requests=2, **tiny),
        models=ReplicaOptions(max_ongoing_requests=1, max_queued_requests=1, **tiny),
        refine=ReplicaOptions(max_ongoing_requests=1, max_queued_requests=2, **tiny),
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(settings), name="tamperscan", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
def client(endpoint):
    with httpx.Client(base_url=endpoint, timeout=TIMEOUT, headers={"X-API-Key": KEY}) as c:
        yield c


def in_process(config, data: bytes) -> dict:
    """The bulk scan's stages on one image, in this process: the reference row."""
    return analyse(build_stages(config), bytes_batch([data], ["ref"]))


def json_mask(result: dict) -> np.ndarray:
    return decode_png(base64.b64decode(result["mask"]["png_base64"])) > 0


# --- over HTTP --------------------------------------------------------------------------------

def test_multipart_upload_returns_the_documented_fields(client):
    data = jpeg(1, 60, 90)
    response = client.post("/v1/scan", params={"heatmap": "true"},
                           files={"file": ("späce ü.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["source"] == "späce ü.jpg"
    assert (result["width"], result["height"]) == (90, 60)
    assert 0.0 <= result["score"] <= 1.0
    assert result["tampered"] == (result["score"] >= result["thresholds"]["tamper"])
    assert len(result["scores"]["wcbnet_heads"]) == 3
    mask = json_mask(result)
    assert mask.shape == (60, 90)
    assert np.array_equal(rle_decode(result["mask"]["rle"]), mask)
    assert result["mask"]["fraction"] == pytest.approx(mask.mean(), abs=1e-6)
    overlay = Image.open(io.BytesIO(base64.b64decode(result["heatmap_overlay_png_base64"])))
    assert overlay.size == (90, 60)
    values = Image.open(io.BytesIO(base64.b64decode(result["heatmap_png_base64"])))
    assert values.mode == "L"  # the heatmap's values, not colours
    assert set(result["timings"]) == {"decode", "copy_move", "jpeg", "nets", "refine",
                                      "finalize", "total"}
    assert result["model_versions"].count("@") == 3  # both nets' weights + the settings


def test_json_matches_the_in_process_stages(client, config):
    for data in (jpeg(2), encode(natural_image(40, 72, 3), "PNG")):
        response = client.post("/v1/scan", content=data,
                               headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text
        got, want = response.json(), in_process(config, data)
        assert want["status"][0] == "ok"
        assert got["score"] == pytest.approx(float(want["score"][0]), abs=1e-6)
        assert got["scores"]["two_stream"] == pytest.approx(float(want["score_two_stream"][0]),
                                                            abs=1e-6)
        assert got["scores"]["wcbnet"] == pytest.approx(float(want["score_wcbnet"][0]), abs=1e-6)
        assert got["scores"]["copy_move"] == pytest.approx(float(want["score_copy_move"][0]),
                                                           abs=1e-6)
        assert got["tampered"] == bool(want["tampered"][0])
        assert got["refined"] == bool(want["refined"][0])
        assert got["model_versions"] == want["model_versions"][0]
        assert np.array_equal(json_mask(got), want["mask"][0])


SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "images"
FRONT_DOOR_IMAGES = {"splice.jpg": (SAMPLES / "splice_000.jpg").read_bytes(),
                     # a clone the detector verifies, so the clone-mask rule runs too
                     "copy move.png": encode(paste(scene(), (40, 50), (220, 230), 100)[0],
                                             "PNG"),
                     "authentic.jpg": (SAMPLES / "authentic_001.jpg").read_bytes(),
                     "corrupt.jpg": b"\xff\xd8\xff\xe0 not really a JPEG"}


def test_four_front_doors_give_equal_scores_masks_and_heatmaps(client, config, tmp_path):
    """The bulk scan, the endpoint, `evaluate` and `explain` all run the one graph: the same
    image gets the same score, mask and heatmap values from each; a corrupt file is an error
    row / a 4xx / a recorded failure / an exception, never a result."""
    from tamperscan.evaluate import Evaluator, ImageFailed
    from tamperscan.explain import explain
    from tamperscan.pipeline import ScanResources, scan
    from tamperscan.render import heatmap_from_png, mask_from_png

    folder = tmp_path / "in"
    folder.mkdir()
    for name, data in FRONT_DOOR_IMAGES.items():
        (folder / name).write_bytes(data)
    heat_config = config.with_runtime(write_heatmaps=True)
    # Batches of one everywhere, so every front door runs the nets on the same tensors.
    scan(str(folder), str(tmp_path / "out"), heat_config, resources=ScanResources(
        batch_size=1, model_actors=1), show_progress=False)
    rows = {Path(r.uri).name: r for r in read_results(str(tmp_path / "out")).itertuples()}
    evaluator = Evaluator(config)
    found_clone = False
    for name, data in FRONT_DOOR_IMAGES.items():
        bulk = rows[name]
        response = client.post("/v1/scan", content=data, params={"heatmap": "true"})
        if name == "corrupt.jpg":
            assert bulk.status == "error" and bulk.error.startswith("corrupt:")
            assert response.status_code == 422 and response.json()["error"] == "corrupt"
            with pytest.raises(ImageFailed, match="corrupt"):
                evaluator.score(data, 1, None)
            with pytest.raises(ValueError, match="corrupt"):
                explain(data, tmp_path / "explain-bad", config)
            continue
        assert bulk.status == "ok", bulk.error
        online = response.json()
        evaluated = evaluator.score(data, 1, None)
        explained = explain(data, tmp_path / f"explain-{name}", config)
        scores = [float(bulk.score), online["score"], evaluated.scores["final"],
                  explained["score"]]
        assert scores == pytest.approx([scores[0]] * 4, abs=1e-6), name
        assert bulk.tampered == online["tampered"] == explained["tampered"], name
        masks = [mask_from_png(bulk.mask_png), json_mask(online), evaluated.masks["final"],
                 mask_from_png((tmp_path / f"explain-{name}" / "mask.png").read_bytes())]
        for other in masks[1:]:
            assert np.array_equal(masks[0], other), name
        heat = heatmap_from_png((tmp_path / "out" / bulk.heatmap_path).read_bytes())
        heat_online = heatmap_from_png(base64.b64decode(online["heatmap_png_base64"]))
        heat_explained = heatmap_from_png(
            (tmp_path / f"explain-{name}" / "heatmap_values.png").read_bytes())
        heat_evaluated = heat_levels(evaluator.row(data)["heatmap"]).astype(np.float32) / 255
        for other in (heat_online, heat_explained, heat_evaluated):
            assert np.array_equal(heat, other), name
        found_clone |= online["scores"]["copy_move"] > 0
    assert found_clone, "the copy-move sample should exercise the clone-mask rule"


def test_every_bad_input_kind_gets_a_clear_4xx(client, reliability):
    corpus = make_corpus()
    bad = [item for item in corpus if item.expect == "error"]
    assert {item.error for item in bad} == set(DECODE_STATUS)
    for item in bad:
        response = client.post("/v1/scan", content=item.data)
        reliability.record(f"corpus: {item.name}", "endpoint (raw body)",
                           f"{DECODE_STATUS[item.error]} {item.error}", http_outcome(response),
                           section="corpus")
        assert response.status_code == DECODE_STATUS[item.error], (item.name, response.text)
        body = response.json()
        assert body["error"] == item.error
        assert len(body["detail"]) > 10 and "Traceback" not in body["detail"]
    # the same through a multipart upload
    truncated = next(item for item in bad if item.error == "corrupt")
    response = client.post("/v1/scan", files={"file": (truncated.name, truncated.data)})
    assert response.status_code == 422 and response.json()["error"] == "corrupt"
    # odd but valid inputs go through
    for name in ("cmyk print.jpg", "sixteen-bit.png"):
        item = next(i for i in corpus if i.name == name)
        response = client.post("/v1/scan", content=item.data)
        reliability.record(f"corpus: {name}", "endpoint (raw body)", "200",
                           str(response.status_code), section="corpus")
        assert response.status_code == 200, name


def test_body_and_file_limits_answer_413(client):
    big = bytes(MAX_BODY_BYTES + 1000)
    response = client.post("/v1/scan", content=big)
    assert response.status_code == 413 and "body" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(20):
            yield bytes(100_000)

    assert client.post("/v1/scan", content=chunks()).status_code == 413
    assert client.post("/v1/scan", files={"file": ("big.jpg", big)}).status_code == 413
    # under the body limit, over the image byte limit: the decoder's limit answers
    response = client.post("/v1/scan", content=b"\xff\xd8\xff" + bytes(MAX_IMAGE_BYTES))
    assert response.status_code == 413 and response.json()["error"] == "too_large"


def test_uri_only_for_allowed_buckets(client):
    ok = client.post("/v1/scan", json={"uri": "s3://allowed/in/photo one.jpg"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["source"] == "s3://allowed/in/photo one.jpg"
    cases = {"s3://private/in/photo one.jpg": 403, "/etc/passwd": 422,
             "file:///etc/passwd": 422, "s3://allowed/in/../x.jpg": 422,
             "s3://allowed/in/missing.jpg": 404}
    for uri, status in cases.items():
        response = client.post("/v1/scan", json={"uri": uri})
        assert response.status_code == status, (uri, response.text)
    assert client.post("/v1/scan", json={"path": "x"}).status_code == 422


def test_api_key_required_except_healthz(endpoint):
    with httpx.Client(base_url=endpoint, timeout=TIMEOUT) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        for method, path in (("GET", "/v1/models"), ("GET", "/readyz"), ("POST", "/v1/scan")):
            for headers in ({}, {"X-API-Key": KEY[:-1] + "X"},
                            {"Authorization": f"Bearer {KEY}x"}, {"Authorization": KEY}):
                response = anonymous.request(method, path, headers=headers, content=jpeg(4))
                assert response.status_code == 401, (path, headers)
                assert response.json()["error"] == "unauthorized"
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert anonymous.get("/readyz", headers=bearer).json()["status"] == "ready"
        models = anonymous.get("/v1/models", headers={"X-API-Key": KEY}).json()
        assert {s["stage"] for s in models["stages"]} == {"Nets", "Refine"}
        assert models["model_versions"].count("@") == 3
        schema = anonymous.get("/openapi.json").json()
        assert "/v1/scan" in schema["paths"]
        assert "multipart/form-data" in schema["paths"]["/v1/scan"]["post"]["requestBody"][
            "content"]


def test_burst_beyond_the_queues_gets_503_and_service_recovers(endpoint, client):
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=endpoint, timeout=TIMEOUT,
                                     headers={"X-API-Key": KEY}) as c:
            return await asyncio.gather(*(c.post("/v1/scan", content=jpeg(10 + i))
                                          for i in range(16)))

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)
    # Work admitted during the burst may still be draining: recovery within a bounded time.
    deadline = time.monotonic() + 60
    while (status := client.post("/v1/scan", content=jpeg(99)).status_code) == 503:
        assert time.monotonic() < deadline, "still overloaded 60 s after the burst"
        time.sleep(1)
    assert status == 200
    assert client.get("/readyz").status_code == 200


# --- in process: the pieces the HTTP tests rely on -------------------------------------------

def test_skipping_refine_for_rows_the_cascade_passes_by_changes_nothing(config):
    """The ingress calls Refine only when the cascade selected a row; Fuse must give the
    same row without Refine's columns as after a Refine that refined nothing."""
    strict = config.model_copy(update={"refine": config.refine.model_copy(
        update={"threshold": 1.0})})
    front, evidence, back = split(build_stages(strict))
    scored = analyse([*front, *evidence, back[0]], bytes_batch([jpeg(5), b"not an image"]))
    assert not scored["refine"].any()
    fuse = Fuse(strict)
    skipped, refined = fuse(scored), fuse(Refine(strict)(scored))
    for key in ("score", "tampered", "refined", "heatmap", "mask_fraction"):
        assert np.array_equal(skipped[key], refined[key], equal_nan=key == "score"), key
    assert all(np.array_equal(a, b) for a, b in zip(skipped["mask"], refined["mask"],
                                                     strict=True))


def test_batches_concat_split_and_merge_round_trip():
    rows = [{"uri": np.array([f"u{i}"], dtype=object), "x": np.full((1, 2, 2), i)}
            for i in range(3)]
    merged, sizes = concat_batches(rows)
    assert merged["x"].shape == (3, 2, 2) and sizes == [1, 1, 1]
    for row, back in zip(rows, split_batch(merged, sizes), strict=True):
        assert all(np.array_equal(row[k], back[k]) for k in row)
    base = {"uri": np.array(["a", "b"], dtype=object), "status": np.array(["ok", "ok"], object),
            "error": np.array(["", ""], dtype=object)}
    first = {"status": np.array(["error", "ok"], object),
             "error": np.array(["internal: one", ""], object), "p": np.ones(2)}
    second = {"status": np.array(["error", "error"], object),
              "error": np.array(["internal: two", "internal: three"], object)}
    out = merge_outputs(base, first, second)
    assert list(out["error"]) == ["internal: one", "internal: three"]
    assert list(out["status"]) == ["error", "error"] and "p" in out


def test_rle_is_coco_column_major():
    mask = np.zeros((3, 4), bool)
    mask[0, 0] = mask[1, 0] = mask[2, 3] = True
    assert rle_encode(mask) == {"size": [3, 4], "counts": [0, 2, 9, 1]}
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (5, 7), (32, 17)):
        random_mask = rng.random(shape) > 0.6
        assert np.array_equal(rle_decode(rle_encode(random_mask)), random_mask)


def test_keys_from_env_and_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# comment\n\nfile-key-0123456789abcdef\n")
    env = {"TAMPERSCAN_API_KEYS": "env-key-0123456789abcdef, other-key-0123456789abcd"}
    keys = load_api_keys(str(keys_file), env)
    assert keys == sorted(["file-key-0123456789abcdef", "env-key-0123456789abcdef",
                           "other-key-0123456789abcd"])
    checker = KeyChecker(keys)
    assert checker.check("env-key-0123456789abcdef")
    assert not checker.check("env-key-0123456789abcde") and not checker.check(None)
    with pytest.raises(AuthConfigError):
        load_api_keys(None, {"TAMPERSCAN_API_KEYS": "short"})
    with pytest.raises(AuthConfigError):
        load_api_keys(str(tmp_path / "missing"), {})


def test_deployment_files_validate_against_serve_and_the_builder():
    from ray.serve.schema import ServeDeploySchema

    from tamperscan.serve import DEPLOYMENT_NAMES

    repo = Path(__file__).resolve().parents[1] / "deployments"
    rayservice = yaml.safe_load((repo / "rayservice.yaml").read_text())
    assert rayservice["kind"] == "RayService"
    configs = [yaml.safe_load((repo / "serve_config.yaml").read_text()),
               yaml.safe_load(rayservice["spec"]["serveConfigV2"])]
    for raw in configs:
        schema = ServeDeploySchema.model_validate(raw)
        for app in schema.applications:
            module, _, attr = app.import_path.partition(":")
            builder = getattr(importlib.import_module(module), attr)
            assert isinstance(builder(app.args), Application)
            assert {d.name for d in app.deployments} <= set(DEPLOYMENT_NAMES)
            # the endpoint flags at the calibrated operating point, not a hand-set threshold
            pipeline = ServeSettings.model_validate(app.args).pipeline
            assert pipeline.operating_point is not None
            assert pipeline.tamper_threshold == PipelineConfig().tamper_threshold


def test_unexpected_errors_answer_500_with_a_reference_only(caplog):
    from fastapi.testclient import TestClient

    from tamperscan.serve_api import build_api

    class Exploding:
        settings = ServeSettings(allow_unauthenticated=True)

        def key_ok(self, key: str | None) -> bool:
            return True

        async def scan_bytes(self, data: bytes, source: str, heatmap: bool) -> dict:
            raise RuntimeError("secret detail /srv/models/x.safetensors")

    with caplog.at_level("ERROR", logger="ray.serve"):
        response = TestClient(build_api(Exploding())).post("/v1/scan", content=b"x")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal" and "reference" in body["detail"]
    assert "secret" not in response.text and "Traceback" not in response.text
    reference = body["detail"].split("reference ")[1].rstrip(")")
    assert any(reference in r.getMessage() and "secret detail" in r.getMessage()
               for r in caplog.records)
