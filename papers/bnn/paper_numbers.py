"""Figures reported in Courbariaux, Hubara et al., "Binarized Neural Networks", NeurIPS 2016 (arXiv 1602.02830).

Test error rates in percent, Table 1 ("Classification test error rates of DNNs trained on MNIST
(MLP architecture without unsupervised pretraining), CIFAR-10 (without data augmentation) and SVHN").
"""

TEST_ERROR = {
    # (data set, implementation): (error %, reference)
    ("MNIST", "Theano"): (0.96, "Table 1"),
    ("MNIST", "Torch7"): (1.40, "Table 1"),
    ("CIFAR-10", "Theano"): (11.40, "Table 1"),
    ("CIFAR-10", "Torch7"): (10.15, "Table 1"),
    ("SVHN", "Theano"): (2.80, "Table 1"),
    ("SVHN", "Torch7"): (2.53, "Table 1"),
}

# Architectures of those results (the MNIST MLPs of the Table 1 experiments).
MNIST_MLP_HIDDEN = {"Theano": (4096, 4096, 4096), "Torch7": (2048, 2048, 2048)}
