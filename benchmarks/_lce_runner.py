"""Runs inside the Larq Compute Engine virtual environment (TensorFlow, larq, LCE; no torch, no repo imports).

benchmarks/binary_engine.py starts it as a subprocess and talks JSON over stdin/stdout: the first line
configures {"image_size", "classes", "batches", "threads", "order"}; each further line {"repeats": n} times
n calls of every model (LCE binary and TFLite float, interleaved) and answers {"<engine>/<batch>/<threads>":
[ms, ...]}; an empty line ends it.

The ConvNet is the BNN / XNOR CIFAR ConvNet: 3x3 convs 128-128-MP-256-256-MP-512-512-MP, two 1024-wide fully
connected layers and the classifier. LCE binary: the first conv and the classifier float, every other layer a
binary convolution with binary input (ste_sign), BatchNorm after each; the two binary fully connected layers
are written as binary convolutions (a 4x4 valid one on the 4x4x512 map, then a 1x1 one), since LCE has no
binary dense op. TFLite float: the same shapes with float layers, BatchNorm and ReLU.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq as lq
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

layers = tf.keras.layers


def convnet(binary: bool, batch: int, image_size: int, classes: int, order: str) -> tf.keras.Model:
    """order "pool_bn": conv -> max-pool -> BN (as our models); "bn_pool": conv -> BN -> max-pool."""
    kw = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip",
          "use_bias": False}
    inp = tf.keras.Input((image_size, image_size, 3), batch_size=batch)
    x = layers.Conv2D(128, 3, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization(momentum=0.9)(x)
    if not binary:
        x = layers.ReLU()(x)
    for c_out, pool in ((128, True), (256, False), (256, True), (512, False), (512, True)):
        if binary:
            x = lq.layers.QuantConv2D(c_out, 3, padding="same", pad_values=1.0, **kw)(x)
        else:
            x = layers.Conv2D(c_out, 3, padding="same", use_bias=False)(x)
        if pool and order == "pool_bn":
            x = layers.MaxPool2D(2)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        if pool and order == "bn_pool":
            x = layers.MaxPool2D(2)(x)
        if not binary:
            x = layers.ReLU()(x)
    side = image_size // 8
    if binary:
        x = lq.layers.QuantConv2D(1024, side, padding="valid", **kw)(x)      # binary FC 8192 -> 1024
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = lq.layers.QuantConv2D(1024, 1, padding="valid", **kw)(x)         # binary FC 1024 -> 1024
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.Flatten()(x)
    else:
        x = layers.Flatten()(x)
        for _ in range(2):
            x = layers.Dense(1024, use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
    out = layers.Dense(classes)(x)
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)
    for lyr in model.layers:  # non-trivial BatchNorm statistics (speed does not depend on them)
        if isinstance(lyr, layers.BatchNormalization):
            g, b, m, v = lyr.get_weights()
            lyr.set_weights([rng.normal(size=g.shape).astype("float32"), rng.normal(size=b.shape).astype("float32"),
                             rng.normal(size=m.shape).astype("float32"),
                             rng.uniform(0.5, 2, size=v.shape).astype("float32")])
    return model


class Runner:
    def __init__(self, flatbuffer: bytes, lce_interp: bool, threads: int, x: np.ndarray):
        if lce_interp:
            self.interp = lce.testing.Interpreter(flatbuffer, num_threads=threads, use_reference_bconv=False,
                                                  use_indirect_bgemm=True)
            inner = self.interp.interpreter  # the C++ wrapper: the whole batch in one invoke (predict() splits it)
            self.call = lambda: inner.predict([x])
        else:
            self.interp = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
            self.interp.allocate_tensors()
            i, o = self.interp.get_input_details()[0]["index"], self.interp.get_output_details()[0]["index"]

            def call():
                self.interp.set_tensor(i, x)
                self.interp.invoke()
                return self.interp.get_tensor(o)
            self.call = call


def main() -> None:
    cfg = json.loads(sys.stdin.readline())
    runners: dict[str, Runner] = {}
    for batch in cfg["batches"]:
        x = np.random.default_rng(1).normal(size=(batch, cfg["image_size"], cfg["image_size"], 3)).astype("float32")
        bin_fb = lce.convert_keras_model(convnet(True, batch, cfg["image_size"], cfg["classes"], cfg["order"]))
        flt = convnet(False, batch, cfg["image_size"], cfg["classes"], cfg["order"])
        flt_fb = tf.lite.TFLiteConverter.from_keras_model(flt).convert()
        for threads in cfg["threads"]:
            runners[f"lce/{batch}/{threads}"] = Runner(bin_fb, True, threads, x)
            runners[f"tflite_fp32/{batch}/{threads}"] = Runner(flt_fb, False, threads, x)
    for r in runners.values():  # warm-up
        r.call()
        r.call()
    print(json.dumps({"ready": True, "lce": lce.__version__, "tensorflow": tf.__version__, "larq": lq.__version__}),
          flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        n = json.loads(line)["repeats"]
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(n):
            for k, r in runners.items():
                t0 = time.perf_counter()
                r.call()
                times[k].append((time.perf_counter() - t0) * 1e3)
        print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
