"""Whole-network latency of the binary engine (papers/xnor/engine.py) against torch fp32, and LCE against TFLite.

For every net, batch (1, 16) and thread count (1, 2): our engine and torch fp32 of the same float network
(the float twin with the same layer shapes), calls interleaved (ours, torch, ours, torch, ...) in one
process with the same thread count, medians over the repeats. Before timing, the engine's predictions are
checked against the simulated binary model (logits compared bit for bit at 1 thread, where PyTorch's own
reductions are single-threaded). Everything is measured for two builds of the engine: ``native``
(-march=native) and ``avx2`` (-march=x86-64-v3).

With ``--with-lce``, Larq Compute Engine runs the same CIFAR ConvNet (binary weights and activations, first
conv and classifier float, BatchNorm before max-pool so that LCE's converter keeps every activation bitpacked,
its fastest form) through its interpreter with ``use_indirect_bgemm=True`` next to TFLite float of the same
shapes, in a subprocess in its own virtual environment (created under the cache dir on first use with
tensorflow 2.16.2, tf_keras 2.16.0, larq 0.14.0, larq-compute-engine 0.16.0, numpy < 2). The subprocess's
repeats are interleaved with ours in rounds, so both see the same machine.

Nets: ``bnnconv`` (the BNN/XNOR CIFAR ConvNet 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10; variant
``xnor`` = XnorBnnConvNet of papers/xnor with alpha and K, variant ``bnn`` = the sign-only BnnConvNet of
papers/bnn, the network LCE runs), ``resnet20`` (XNOR ResNet-20, 32x32), ``resnet18`` (XNOR ResNet-18, 224x224;
first conv, 1x1 shortcuts and classifier float as in the paper), ``bnn_mlp`` (papers/bnn's MLP at the
mnist_mlp preset's widths, 784-3x1536-10). Weights are random with BatchNorm statistics of both signs (speed
does not depend on them).

    python -m benchmarks.binary_engine [--with-lce] [--repeats 21] [--quick]
    python -m benchmarks.binary_engine --table-only     # regenerate the table in papers/xnor/ENGINE.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from common.paths import atomic_path, cache_dir

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "binary_engine.json"
RESULT_AVX2 = ROOT / "benchmarks" / "results" / "binary_engine_avx2.json"
# torch on an AVX2-only machine: ATen's kernels, oneDNN's convolutions and MKL's GEMMs capped at AVX2 (read by
# each library when it loads, so the benchmark re-executes itself with them set)
AVX2_MACHINE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
ENGINE_MD = ROOT / "papers" / "xnor" / "ENGINE.md"
LCE_PACKAGES = ["tensorflow==2.16.2", "tf_keras==2.16.0", "larq==0.14.0", "larq-compute-engine==0.16.0", "numpy<2"]
TABLE_BEGIN, TABLE_END = "<!-- binary_engine table: begin (generated) -->", "<!-- binary_engine table: end -->"
TABLE_AVX2_BEGIN = "<!-- binary_engine avx2-machine table: begin (generated) -->"
TABLE_AVX2_END = "<!-- binary_engine avx2-machine table: end -->"


def cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return sorted(line.split(":", 1)[1].split())
    return []


def _trained_like_(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data = torch.randn(n, generator=g)
            m.bias.data = torch.randn(n, generator=g) * 0.5
            m.running_mean = torch.randn(n, generator=g) * 2
            m.running_var = torch.rand(n, generator=g) * 3 + 0.2
    return model.eval()


def nets(names: list[str]) -> list[tuple[str, str, nn.Module, nn.Module, tuple[int, ...]]]:
    """(net, variant, binary simulated model, float twin, input shape) for each requested net."""
    from torchvision.models import resnet18

    from common.models import MLP, BnnConvNet, resnet20
    from papers.bnn.bnn import BinaryActivation, binarize_weights_
    from papers.bnn.config import PRESETS as BNN_PRESETS
    from papers.xnor.models import build

    torch.manual_seed(0)
    out = []
    if "bnnconv" in names:
        fp = BnnConvNet(3, 10, nn.ReLU).eval()
        out.append(("bnnconv", "xnor", _trained_like_(build("bnnconv", "xnor", (3, 32, 32), 10)), fp, (3, 32, 32)))
        bnn = binarize_weights_(BnnConvNet(3, 10, act=BinaryActivation, out_bn=True))
        out.append(("bnnconv", "bnn", _trained_like_(bnn), fp, (3, 32, 32)))
    if "resnet20" in names:
        out.append(("resnet20", "xnor", _trained_like_(build("resnet20", "xnor", (3, 32, 32), 10)), resnet20().eval(),
                    (3, 32, 32)))
    if "resnet18" in names:
        out.append(("resnet18", "xnor", _trained_like_(build("resnet18", "xnor", (3, 224, 224), 1000)),
                    resnet18(num_classes=1000).eval(), (3, 224, 224)))
    if "bnn_mlp" in names:
        hidden = BNN_PRESETS["mnist_mlp"].hidden
        bnn = binarize_weights_(MLP(784, hidden, 10, act=BinaryActivation, batchnorm=True, out_bn=True))
        fp = MLP(784, hidden, 10, act=nn.ReLU, batchnorm=True, out_bn=True).eval()
        out.append(("bnn_mlp", "bnn", _trained_like_(bnn), fp, (1, 28, 28)))
    return out


class LceProcess:
    """The LCE / TFLite subprocess (benchmarks/_lce_runner.py) in its own virtual environment."""

    def __init__(self, batches: list[int], threads: list[int]):
        venv = cache_dir("xnor") / "lce-venv"
        py = venv / "bin" / "python"
        marker = venv / "nnq-ready"
        if not marker.exists():
            print(f"creating {venv} with {' '.join(LCE_PACKAGES)} (once)", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *LCE_PACKAGES], check=True)
            with atomic_path(marker) as tmp:
                tmp.write_text(" ".join(LCE_PACKAGES) + "\n")
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
        self.proc = subprocess.Popen([str(py), str(ROOT / "benchmarks" / "_lce_runner.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        self._send({"image_size": 32, "classes": 10, "batches": batches, "threads": threads, "order": "bn_pool"})
        self.versions = self._recv()
        self.times: dict[str, list[float]] = {}

    def _send(self, obj: dict | None) -> None:
        self.proc.stdin.write(("" if obj is None else json.dumps(obj)) + "\n")
        self.proc.stdin.flush()

    def _recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the LCE subprocess ended early; run benchmarks/_lce_runner.py by hand to see why")
        return json.loads(line)

    def round(self, repeats: int) -> None:
        self._send({"repeats": repeats})
        for k, v in self._recv().items():
            self.times.setdefault(k, []).extend(v)

    def close(self) -> None:
        self._send(None)
        self.proc.wait(timeout=60)


def measure(args: argparse.Namespace) -> dict:
    from papers.xnor import engine

    rows: list[dict] = []
    checks: list[dict] = []
    lce = LceProcess(args.batches, args.threads) if args.with_lce else None
    rounds = max(1, args.repeats // args.round)
    models = nets(args.nets)
    for isa in args.isa:
        built = [(net, var, engine.to_engine(model, isa=isa), model, fp, shape)
                 for net, var, model, fp, shape in models]
        backend = built[0][2].backend()
        samples: dict[tuple, list[float]] = {}
        inputs = {}
        for net, var, eng, model, fp, shape in built:
            for batch in args.batches:
                x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(batch))
                inputs[(net, var, batch)] = x
                for th in args.threads:
                    engine.set_num_threads(th)
                    with torch.no_grad():
                        ref = model(x)
                    out = eng(x)
                    checks.append({"net": net, "variant": var, "isa": isa, "batch": batch, "threads": th,
                                   "predictions_identical": bool(torch.equal(out.argmax(1), ref.argmax(1))),
                                   "logits_identical": bool(torch.equal(out, ref))})
                    if not checks[-1]["predictions_identical"]:
                        raise SystemExit(f"engine predictions differ from the simulated model: {checks[-1]}")
        for r in range(rounds):
            for net, var, eng, model, fp, shape in built:
                for batch in args.batches:
                    x = inputs[(net, var, batch)]
                    for th in args.threads:
                        engine.set_num_threads(th)
                        fns = {"ours": lambda e=eng, x=x: e(x), "torch_fp32": lambda f=fp, x=x: f(x)}
                        with torch.no_grad():
                            if r == 0:
                                for f in fns.values():
                                    f()
                                    f()
                            for _ in range(args.round):
                                for k, f in fns.items():
                                    t0 = time.perf_counter()
                                    f()
                                    samples.setdefault((net, var, k, batch, th), []).append(time.perf_counter() - t0)
            if lce is not None and isa == args.isa[0]:
                lce.round(args.round)
            print(f"{isa}: round {r + 1}/{rounds}", flush=True)
        for (net, var, eng_name, batch, th), v in samples.items():
            rows.append({"net": net, "variant": var, "engine": eng_name, "isa": isa, "batch": batch, "threads": th,
                         "median_ms": round(statistics.median(v) * 1e3, 4), "repeats": len(v),
                         "backend": backend if eng_name == "ours" else f"torch {torch.__version__}"})
    lce_meta = None
    if lce is not None:
        for key, v in lce.times.items():
            eng_name, batch, th = key.split("/")
            rows.append({"net": "bnnconv", "variant": "bnn" if eng_name == "lce" else "fp32", "engine": eng_name,
                         "isa": "pypi-wheel", "batch": int(batch), "threads": int(th),
                         "median_ms": round(statistics.median(v), 4), "repeats": len(v),
                         "backend": f"larq-compute-engine {lce.versions['lce']} (use_indirect_bgemm=True)"
                         if eng_name == "lce" else f"tensorflow-lite {lce.versions['tensorflow']} (XNNPACK)"})
        lce_meta = lce.versions
        lce.close()
    return {"rows": rows, "checks": checks, "lce": lce_meta}


def ratio_table(result: dict) -> str:
    """Markdown: ours / torch fp32 and LCE / TFLite speed-ups per net, batch, threads, from the rows."""
    med = {(r["net"], r["variant"], r["engine"], r["isa"], r["batch"], r["threads"]): r["median_ms"]
           for r in result["rows"]}
    lines = [("| net | variant | batch | threads | isa | ours ms | torch fp32 ms | **torch / ours** | LCE ms | "
              "TFLite fp32 ms | **TFLite / LCE** | ours / LCE time |"),
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (net, var, eng, isa, b, th), ms in sorted(med.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][4],
                                                                             kv[0][5])):
        if eng != "ours":
            continue
        fp = med.get((net, var, "torch_fp32", isa, b, th))
        lce = med.get((net, "bnn", "lce", "pypi-wheel", b, th)) if net == "bnnconv" else None
        tfl = med.get((net, "fp32", "tflite_fp32", "pypi-wheel", b, th)) if net == "bnnconv" else None
        cell = (lambda v: f"{v:.2f}" if v is not None else "")
        lines.append(f"| {net} | {var} | {b} | {th} | {isa} | {ms:.2f} | {cell(fp)} | "
                     f"**{fp / ms:.2f}×** | {cell(lce)} | {cell(tfl)} | "
                     f"{'**%.2f×**' % (tfl / lce) if lce and tfl else ''} | {'%.2f' % (ms / lce) if lce else ''} |")
    return "\n".join(lines)


def targets(result: dict) -> str:
    """Markdown bullets: each target with the measured figure (from the rows), met or not."""
    med = {(r["net"], r["variant"], r["engine"], r["isa"], r["batch"], r["threads"]): r["median_ms"]
           for r in result["rows"]}
    out = []
    for var in ("xnor", "bnn"):
        ours = med.get(("bnnconv", var, "ours", "avx2", 1, 1))
        fp = med.get(("bnnconv", var, "torch_fp32", "avx2", 1, 1))
        if ours and fp:
            out.append(f"- bnnconv ({var}), batch 1, 1 thread, AVX2 build: torch fp32 / ours = {fp / ours:.2f}× "
                       f"(target ≥ 4×: {'met' if fp / ours >= 4 else 'NOT met'})")
        lce = med.get(("bnnconv", "bnn", "lce", "pypi-wheel", 1, 1))
        if ours and lce:
            out.append(f"- bnnconv ({var}), batch 1, 1 thread: LCE {lce:.2f} ms vs ours {ours:.2f} ms, ours "
                       f"{lce / ours:.2f}× faster (target: faster than LCE: {'met' if ours < lce else 'NOT met'})")
    for isa in ("avx2", "native"):
        ours = med.get(("resnet18", "xnor", "ours", isa, 1, 1))
        fp = med.get(("resnet18", "xnor", "torch_fp32", isa, 1, 1))
        if ours and fp:
            out.append(f"- XNOR ResNet-18 224×224, batch 1, 1 thread, {isa} build: torch fp32 / ours = "
                       f"{fp / ours:.2f}× "
                       f"(target ≥ 2×: {'met' if fp / ours >= 2 else 'NOT met'})")
    checks = result.get("checks", [])
    if checks:
        pred = sum(c["predictions_identical"] for c in checks)
        logit = sum(c["logits_identical"] for c in checks)
        one = [c for c in checks if c["threads"] == 1]
        out.append(f"- predictions identical to the simulated model in {pred} of {len(checks)} configurations; logits "
                   f"bit-identical in {logit} of {len(checks)} "
                   f"({sum(c['logits_identical'] for c in one)} of {len(one)} "
                   "at 1 thread)")
    return "\n".join(out)


def write_table(result: dict) -> None:
    avx2 = bool(result.get("torch_forced_isa"))
    begin, end = (TABLE_AVX2_BEGIN, TABLE_AVX2_END) if avx2 else (TABLE_BEGIN, TABLE_END)
    name = (RESULT_AVX2 if avx2 else RESULT).name
    if not ENGINE_MD.exists():
        return
    text = ENGINE_MD.read_text()
    if begin not in text:
        return
    m = result["machine"]
    forced = (f"; torch forced to AVX2 ({', '.join(f'`{k}={v}`' for k, v in result['torch_forced_isa'].items())})"
              if avx2 else "")
    body = (f"{begin}\n{targets(result)}\n\n{ratio_table(result)}\n\n"
            f"Machine: {m['cpu']} ({m['cpu_count']} cores), torch "
            f"{m['torch']}, engine `{result['engine_backend']}`, commit `{m['commit'][:10]}`, {m['date']}; "
            f"medians of {result['repeats']} interleaved repeats, load average (1 min) "
            f"{result['loadavg_1_5_15_before'][0]:.1f} before and {result['loadavg_1_5_15_after'][0]:.1f} after "
            f"(`benchmarks/results/{name}`, generated by `benchmarks/binary_engine.py`){forced}.\n{end}")
    head, rest = text.split(begin, 1)
    with atomic_path(ENGINE_MD) as tmp:
        tmp.write_text(head + body + rest.split(end, 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["bnnconv", "resnet20", "resnet18", "bnn_mlp"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--isa", nargs="+", default=["native", "avx2"])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--round", type=int, default=7, help="repeats per round (rounds interleave ours and LCE)")
    ap.add_argument("--with-lce", action="store_true", help="also run LCE and TFLite (creates their venv once)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, for a smoke check")
    ap.add_argument("--table-only", action="store_true", help="regenerate ENGINE.md's tables from the JSONs")
    ap.add_argument("--avx2-machine", action="store_true",
                    help="torch as on an AVX2-only machine (AVX2_MACHINE_ENV), our AVX2 build only; writes "
                         "binary_engine_avx2.json")
    args = ap.parse_args()
    if args.table_only:
        for path in (RESULT, RESULT_AVX2):
            if path.is_file():
                write_table(json.loads(path.read_text()))
        return
    if args.avx2_machine and any(os.environ.get(k) != v for k, v in AVX2_MACHINE_ENV.items()):
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.binary_engine", *sys.argv[1:]],
                  {**os.environ, **AVX2_MACHINE_ENV})
    if args.avx2_machine:
        args.isa = ["avx2"]
    if args.quick:
        args.repeats, args.round = 3, 3
    load_before = os.getloadavg()
    t0 = time.time()
    figures = measure(args)
    from benchmarks._meta import machine
    from papers.xnor import engine

    result = {"benchmark": "binary_engine", "cpu_flags": cpu_flags(),
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "engine_backend": engine.library("native").xnor_isa().decode(),
              "isa_builds": {"native": "cc -O3 -fopenmp -march=native",
                             "avx2": "cc -O3 -fopenmp -march=x86-64-v3 -mtune=native",
                             "pypi-wheel": "the LCE / TFLite wheels as published"},
              **figures, "repeats": args.repeats, "wall_s": round(time.time() - t0, 1),
              "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
              "machine": machine()}
    if args.avx2_machine:
        result["torch_forced_isa"] = AVX2_MACHINE_ENV
    out = RESULT_AVX2 if args.avx2_machine else RESULT
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    write_table(result)
    print(ratio_table(result))
    print(out)


if __name__ == "__main__":
    main()
