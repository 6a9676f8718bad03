"""Figures reported in Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using Binary
Convolutional Neural Networks", ECCV 2016 (arXiv 1603.05279).

ImageNet (ILSVRC2012 validation) top-1 / top-5 accuracy in percent. The paper reports no CIFAR-10,
MNIST or digits result for these architectures, so our small-data numbers have no paper counterpart.
"""

IMAGENET_ACCURACY = {
    # (network, method): (top-1 %, top-5 %, reference)
    ("AlexNet", "full precision"): (56.6, 80.2, "Table 1"),
    ("AlexNet", "BWN"): (56.8, 79.4, "Table 1"),
    ("AlexNet", "XNOR-Net"): (44.2, 69.2, "Table 1"),
    ("ResNet-18", "full precision"): (69.3, 89.2, "Table 2"),
    ("ResNet-18", "BWN"): (60.8, 83.0, "Table 2"),
    ("ResNet-18", "XNOR-Net"): (51.2, 73.2, "Table 2"),
}

CLAIMS = {
    # Memory: one bit per weight instead of 32 (Abstract; Sec. 1).
    "memory_saving_x": (32, "Abstract; Sec. 1"),
    # "58x faster convolutional operations", counted as high-precision operations, not measured
    # (Abstract; Sec. 3.2, "Efficiency analysis", Fig. 4).
    "conv_speedup_x": (58, "Abstract; Sec. 3.2 Efficiency analysis"),
}
