"""The knobs of every synthesis stage in one frozen dataclass. It sits below the stage modules
(each reads its own fields) so that none of them has to import the synthesiser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

KINDS = ("splice", "copy_move", "removal", "authentic")


@dataclass(frozen=True)
class SynthConfig:
    """Mixture and parameter ranges. Qualities are Pillow/IJG quality factors."""

    kind_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "splice": 0.35,
            "copy_move": 0.20,
            "removal": 0.10,
            "authentic": 0.35,
        }
    )
    size_range: tuple[int, int] = (256, 768)  # longer side target; photos are never upscaled
    p_fit_by_resize: float = 0.5  # else crop on the 8-px grid
    p_host_recompress: float = 0.5  # q1 stage -> double JPEG when the final save is JPEG
    host_quality_range: tuple[int, int] = (60, 100)
    p_source_recompress: float = 0.8  # splice donor re-saved at q_src before the cut
    source_quality_range: tuple[int, int] = (50, 100)
    format_weights: Mapping[str, float] = field(
        default_factory=lambda: {"JPEG": 0.8, "PNG": 0.12, "TIFF": 0.08}
    )
    final_quality_range: tuple[int, int] = (60, 98)
    p_chroma_444: float = 0.3  # else 4:2:0 chroma subsampling (Pillow's default)
    p_grid_shift: float = 0.3  # 1-7 px crop before the final save
    p_global_resize: float = 0.15
    global_resize_range: tuple[float, float] = (0.75, 0.95)
    splice_area_range: tuple[float, float] = (0.01, 0.30)  # of the host area
    copy_move_area_range: tuple[float, float] = (0.01, 0.15)
    p_copy_move_rescale: float = 0.5
    copy_move_scale_range: tuple[float, float] = (0.8, 1.25)
    removal_area_range: tuple[float, float] = (0.01, 0.08)
    p_use_segment: float = 0.8  # object from a label map when one exists, else a random blob
    p_prefer_interior: float = 0.8  # pick among segments not touching the border, if any
    splice_scale_range: tuple[float, float] = (0.3, 2.5)  # resampling bounds for segments
    p_rotate: float = 0.4
    max_rotation_deg: float = 25.0
    feather_sigma_range: tuple[float, float] = (0.3, 2.5)
    p_color_match: float = 0.7
    color_match_strength_range: tuple[float, float] = (0.2, 0.8)  # partial: 1 = full transfer
    p_inpaint_grain: float = 0.5
    #: "both": a copy-move's mask is source | target (CoMoFoD/NoSo convention); "target": the
    #: pasted region only (the weights shipped before 2026-11-22 were trained that way).
    copy_move_mask: str = "both"
    #: Probability of one global photometric change after the forgery, to forged and authentic
    #: images alike: the post-processing families of CoMoFoD (brightness, contrast, blur, noise,
    #: colour reduction; its JPEG family is the final save). 0 (the default) draws nothing, so
    #: the streams the shipped weights were trained on are reproduced exactly.
    p_photometric: float = 0.0
    brightness_range: tuple[float, float] = (10.0, 40.0)  # grey levels, either sign
    contrast_range: tuple[float, float] = (0.7, 1.3)  # gain around the image mean
    blur_sigma_range: tuple[float, float] = (0.5, 1.5)
    noise_sigma_range: tuple[float, float] = (1.0, 6.0)  # grey levels, per pixel and channel
    colour_levels_range: tuple[int, int] = (16, 64)  # levels per channel after reduction
    max_attempts: int = 10

    def __post_init__(self) -> None:
        if set(self.kind_weights) - set(KINDS):
            raise ValueError(f"unknown kinds {set(self.kind_weights) - set(KINDS)}")
        if set(self.format_weights) - {"JPEG", "PNG", "TIFF"}:
            raise ValueError(f"unknown formats {set(self.format_weights)}")
        if self.size_range[0] > self.size_range[1] or self.size_range[0] < 32:
            raise ValueError(f"bad size_range {self.size_range}")
        if self.copy_move_mask not in ("both", "target"):
            raise ValueError(
                f"copy_move_mask must be 'both' or 'target', not {self.copy_move_mask!r}")
