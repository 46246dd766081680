"""Networks: the two-stream localizer and WCBnet, their parts, builders and weight I/O."""

from tamperscan.nets.build import build_model, load_config, load_weights, save_weights
from tamperscan.nets.coordinate_attention import CoordinateAttention
from tamperscan.nets.mobilenet_v1 import MobileNetV1
from tamperscan.nets.pyramid_pooling import PyramidPooling
from tamperscan.nets.two_stream import TwoStreamConfig, TwoStreamLocalizer
from tamperscan.nets.wcbnet import WCBNet, WCBNetConfig

__all__ = [
    "CoordinateAttention",
    "MobileNetV1",
    "PyramidPooling",
    "TwoStreamConfig",
    "TwoStreamLocalizer",
    "WCBNet",
    "WCBNetConfig",
    "build_model",
    "load_config",
    "load_weights",
    "save_weights",
]
