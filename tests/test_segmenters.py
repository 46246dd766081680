"""Segmenters: shared machinery, superpixels, SAM (tiny random model), DeepLab, PSPNet."""

from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tamperscan.refine.segmenters import (
    SEGMENTERS,
    DeepLabSegmenter,
    FelzenszwalbSegmenter,
    PSPNetSegmenter,
    SamAutomaticSegmenter,
    SamPromptSegmenter,
    Segmenter,
    SlicSegmenter,
    build_segmenter,
    load_sam,
    load_state_dict_file,
)
from tamperscan.refine.segmenters.pspnet import PSPNet, build_pspnet

torch.set_num_threads(1)


def _shapes(height: int = 96, width: int = 128, seed: int = 0):
    """Grey noisy background with a red disk, a blue rectangle and a green triangle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    disk = (yy - 0.35 * height) ** 2 + (xx - 0.3 * width) ** 2 <= (0.2 * height) ** 2
    rect = (yy > 0.55 * height) & (yy < 0.9 * height) & (xx > 0.55 * width) & (xx < 0.9 * width)
    tri = (yy > 0.6 * height) & (xx > 0.05 * width) & (xx - 0.05 * width < yy - 0.6 * height)
    rgb = np.full((height, width, 3), 120.0)
    rgb[disk] = (200, 30, 30)
    rgb[rect] = (30, 40, 200)
    rgb[tri] = (40, 190, 60)
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), {"disk": disk, "rect": rect, "tri": tri}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _best_iou(masks: np.ndarray, target: np.ndarray) -> float:
    return max(_iou(m, target) for m in masks)


class _Fixed(Segmenter):
    """One-hook subclass returning given masks (exercises the base machinery)."""

    def __init__(self, masks, **options):
        super().__init__(**options)
        self.masks = masks

    def _regions(self, rgb, cam):
        return self.masks


# ----------------------------------------------------------------------------- base machinery


def test_base_drops_tiny_dedupes_caps_and_may_return_nothing():
    rgb = np.zeros((40, 50, 3), dtype=np.uint8)
    big = np.zeros((40, 50), dtype=bool)
    big[2:38, 2:45] = True
    near_copy = big.copy()
    near_copy[2, 2] = False
    speck = np.zeros((40, 50), dtype=bool)
    speck[0, 0] = True
    other = ~big
    out = _Fixed([speck, big, near_copy, other], min_area_frac=0.01).segment(rgb)
    assert out.shape == (2, 40, 50) and out.dtype == bool
    np.testing.assert_array_equal(out[0], big)  # largest first without a CAM
    np.testing.assert_array_equal(out[1], other)
    assert len(_Fixed([big, other], max_regions=1).segment(rgb)) == 1

    empty = _Fixed([]).segment(rgb)
    assert empty.shape == (0, 40, 50) and empty.dtype == bool
    assert _Fixed([np.zeros((40, 50), bool)]).segment(rgb).shape == (0, 40, 50)


def test_base_ranks_by_cam_similarity_when_a_cam_is_given():
    rgb = np.zeros((40, 50, 3), dtype=np.uint8)
    left = np.zeros((40, 50), dtype=bool)
    left[:, :20] = True
    cam = np.zeros((20, 25), dtype=np.float32)  # any CAM size: resized to the working grid
    cam[5:15, 15:25] = 1.0
    out = _Fixed([left, ~left], max_regions=1).segment(rgb, cam)
    np.testing.assert_array_equal(out[0], ~left)  # smaller by area, but holds the CAM


def test_base_rejects_bad_inputs():
    seg = _Fixed([])
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        seg.segment(np.zeros((10, 10, 3), dtype=np.uint8), np.full((10, 10), np.nan))
    with pytest.raises(ValueError):
        _Fixed([np.ones((5, 5), bool)]).segment(np.zeros((10, 10, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- superpixels


@pytest.mark.parametrize("name", ["felzenszwalb", "slic"])
def test_superpixels_cover_the_image_and_find_the_shapes(name):
    rgb, shapes = _shapes()
    masks = build_segmenter(name).segment(rgb)
    assert masks.ndim == 3 and masks.shape[1:] == rgb.shape[:2] and masks.dtype == bool
    assert 1 <= len(masks) <= 64
    assert masks.any(axis=0).mean() > 0.95
    for target in shapes.values():
        assert _best_iou(masks, target) > 0.7


def test_superpixels_downscale_for_speed_and_upscale_back():
    rgb, shapes = _shapes(height=150, width=200)
    segmenter = FelzenszwalbSegmenter(max_side=64)
    masks = segmenter.segment(rgb)
    assert masks.shape[1:] == (150, 200)
    assert _best_iou(masks, shapes["disk"]) > 0.7


def test_cam_aware_cap_keeps_the_region_under_the_cam():
    rgb, shapes = _shapes()
    cam = shapes["rect"].astype(np.float32)
    masks = SlicSegmenter(max_regions=1).segment(rgb, cam)
    assert len(masks) == 1
    assert _iou(masks[0], shapes["rect"]) > 0.7


def test_registry():
    assert isinstance(build_segmenter(), FelzenszwalbSegmenter)
    assert set(SEGMENTERS) == {"felzenszwalb", "slic", "sam", "sam_prompt", "deeplab", "pspnet"}
    with pytest.raises(ValueError, match="unknown segmenter"):
        build_segmenter("watershed")


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("sam", "checkpoint"),
        ("sam_prompt", "checkpoint"),
        ("deeplab", "weights"),
        ("pspnet", "weights"),
    ],
)
def test_missing_weights_name_the_option(name, option):
    with pytest.raises(ValueError, match=f"'{option}'"):
        build_segmenter(name)


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_segmenter("deeplab", weights=str(tmp_path / "nope.pth"))


# ----------------------------------------------------------------------------- SAM


@pytest.fixture(scope="module")
def tiny_sam():
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(0)
    size, patch, dim = 64, 8, 32
    encoder = ImageEncoderViT(
        img_size=size, patch_size=patch, embed_dim=dim, depth=1, num_heads=2, mlp_ratio=2.0,
        out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=False, window_size=0, global_attn_indexes=(),
    )  # fmt: skip
    prompt = PromptEncoder(
        embed_dim=dim, image_embedding_size=(size // patch, size // patch),
        input_image_size=(size, size), mask_in_chans=4,
    )  # fmt: skip
    decoder = MaskDecoder(
        num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=1, iou_head_hidden_dim=16,
        transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
    )  # fmt: skip
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder).eval()


def test_sam_automatic_end_to_end(tiny_sam):
    rgb, _ = _shapes(48, 72)
    segmenter = SamAutomaticSegmenter(
        model=tiny_sam, points_per_side=4, min_area_frac=0.0,
        generator_options={"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    )  # fmt: skip
    masks = segmenter.segment(rgb)
    assert masks.dtype == bool and masks.shape[1:] == (48, 72)
    assert 1 <= len(masks) <= 16 * 3


def test_sam_prompt_end_to_end(tiny_sam):
    rgb, shapes = _shapes(48, 72)
    segmenter = SamPromptSegmenter(model=tiny_sam, num_peaks=2, min_area_frac=0.0)
    cam = shapes["disk"].astype(np.float32) + 0.5 * shapes["rect"]
    peaks = segmenter.cam_peaks(cam)
    assert 1 <= len(peaks) <= 2
    x, y = peaks[0].astype(int)
    assert shapes["disk"][y, x]  # strongest peak first, as (x, y)
    masks = segmenter.segment(rgb, cam)
    assert masks.dtype == bool and masks.shape[1:] == (48, 72)
    assert 1 <= len(masks) <= 3 * len(peaks)
    assert segmenter.segment(rgb, np.zeros((48, 72))).shape == (0, 48, 72)
    with pytest.raises(ValueError, match="CAM"):
        segmenter.segment(rgb)


def test_sam_registry_path_loads_a_vit_b_checkpoint(tmp_path, tiny_sam):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        reference = sam_model_registry["vit_b"](checkpoint=None)
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in reference.state_dict().items()}
    probe = "mask_decoder.iou_token.weight"
    state[probe] = torch.arange(state[probe].numel(), dtype=torch.float32).view_as(state[probe])
    path = tmp_path / "sam_vit_b.pth"
    torch.save(state, path)

    segmenter = build_segmenter("sam_prompt", checkpoint=str(path), model_type="vit_b")
    model = segmenter.model
    assert model.image_encoder.patch_embed.proj.out_channels == 768
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    torch.testing.assert_close(model.state_dict()[probe], state[probe])

    torch.save(tiny_sam.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(ValueError, match="do not match"):
        load_sam(tmp_path / "tiny.pth", "vit_b")


# ----------------------------------------------------------------------------- semantic nets


def test_deeplab_loads_weights_and_segments(tmp_path):
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    path = tmp_path / "deeplab.safetensors"
    save_file(net.state_dict(), str(path))
    segmenter = build_segmenter("deeplab", weights=str(path), num_classes=3, min_area_frac=0.0)
    assert segmenter.net.aux_classifier is not None  # aux head detected from the weights
    rgb, _ = _shapes(40, 56)
    masks = segmenter.segment(rgb)
    assert masks.dtype == bool and masks.shape[1:] == (40, 56) and len(masks) >= 1
    assert masks.any(axis=0).all()  # every pixel has a class, so class regions cover the image
    classes = segmenter.predict_classes(rgb)
    for value in np.unique(classes):
        assert any(np.array_equal(m, classes == value) for m in masks)
    with pytest.raises(ValueError, match="do not match"):
        DeepLabSegmenter(weights=str(path), num_classes=5)


def test_pspnet_shapes_and_dilation():
    net = build_pspnet(num_classes=4, aux_loss=True)
    x = torch.randn(1, 3, 50, 66)
    with torch.inference_mode():
        out = net(x)
        c4 = net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))
    assert out["out"].shape == (1, 4, 50, 66) and out["aux"].shape == (1, 4, 50, 66)
    assert c4.shape[-2:] == (7, 9)  # output stride 8: layer3/4 dilated, not strided
    assert [branch[0].output_size for branch in net.ppm.branches] == [1, 2, 3, 6]
    with pytest.raises(ValueError):
        PSPNet(backbone="vgg16")


def test_pspnet_segmenter_loads_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "pspnet.pth"
    state = build_pspnet(num_classes=3).state_dict()
    torch.save({"state_dict": state}, path)  # training-checkpoint layout is unwrapped
    assert set(load_state_dict_file(path)) == set(state)
    segmenter = PSPNetSegmenter(weights=str(path), num_classes=3, min_area_frac=0.0)
    rgb, _ = _shapes(40, 56)
    masks = segmenter.segment(rgb)
    assert masks.dtype == bool and masks.shape[1:] == (40, 56) and len(masks) >= 1
    assert masks.any(axis=0).all()
