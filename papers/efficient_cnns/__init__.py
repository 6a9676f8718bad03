"""Efficient CNN architectures (MobileNet v1/v2, ShuffleNet v1/v2, SqueezeNet, SqueezeNext): public API."""

from papers.efficient_cnns.mobilenet_v1 import DepthwiseSeparable, MobileNetV1
from papers.efficient_cnns.mobilenet_v2 import InvertedResidual, MobileNetV2
from papers.efficient_cnns.models import ARCHS, build, cost
from papers.efficient_cnns.shufflenet_v1 import ShuffleNetV1, ShuffleUnit, channel_shuffle
from papers.efficient_cnns.shufflenet_v2 import ShuffleNetV2, ShuffleV2Unit
from papers.efficient_cnns.squeezenet import Fire, SqueezeNet
from papers.efficient_cnns.squeezenext import SqnxtBlock, SqueezeNext

__all__ = ["ARCHS", "DepthwiseSeparable", "Fire", "InvertedResidual", "MobileNetV1", "MobileNetV2", "ShuffleNetV1",
           "ShuffleNetV2", "ShuffleUnit", "ShuffleV2Unit", "SqnxtBlock", "SqueezeNet", "SqueezeNext", "build",
           "channel_shuffle", "cost"]
