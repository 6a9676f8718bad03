"""Figures reported in Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net: ImageNet Classification Using Binary
Convolutional Neural Networks", ECCV 2016 (arXiv 1603.05279 v4; every reference below is to that version).

ImageNet (ILSVRC2012 validation) top-1 / top-5 accuracy in percent (Tables 1 and 2), the CIFAR-10 test error of
the BC/BNN ConvNet (Sec. 4.2, "CIFAR-10"), and the efficiency claims (Abstract; Sec. 4.1).
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

CIFAR10_ERROR = {
    # (network, method): (test error %, reference). Sec. 4.2: "BWN and XNOR-Net on CIFAR-10 using the same network
    # architecture as BC and BNN achieve the error rate of 9.88% and 10.17% respectively" -- the BC/BNN ConvNet,
    # our arch "bnnconv" (2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC). The paper gives no float error for it.
    ("bnnconv", "BWN"): (9.88, "Sec. 4.2, CIFAR-10"),
    ("bnnconv", "XNOR-Net"): (10.17, "Sec. 4.2, CIFAR-10"),
}

CLAIMS = {
    # Memory: one bit per weight instead of 32 (Abstract; Sec. 3.1: "a factor of ~32x").
    "memory_saving_x": (32, "Abstract; Sec. 3.1"),
    # "58x faster convolutional operations (in terms of number of the high precision operations)" (Abstract).
    # Sec. 4.1 (Efficiency Analysis) gives its origin: the speed-up of ONE convolution (c = 256, n_I = 14^2,
    # n_W = 3^2) in the authors' CPU implementation, excluding memory allocation and access; the formula
    # S = 64 c N_W / (c N_W + 64) gives 62.27x for that convolution in theory.
    "conv_speedup_x": (58, "Abstract; Sec. 4.1 Efficiency Analysis (one convolution, the authors' CPU code)"),
    "conv_speedup_theory_x": (62.27, "Sec. 4.1 Efficiency Analysis (S = 64 c N_W / (c N_W + 64), c=256, N_W=9)"),
}
