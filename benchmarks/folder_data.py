"""Streamed image folders: peak memory and images/s of one training epoch, by folder size and loader workers.

Generates ImageNet-like folders (RGB JPEGs of 500x375 and similar sizes, quality 90, 10 classes) of 1,000 and
5,000 images, then runs one training epoch over each through ``common.data.FolderData`` (decode,
RandomResizedCrop 224, flip, normalise, collate into batches of 64; no model) with 0, 1 and 2 DataLoader
workers, each setting in a fresh process. Memory is the peak over the epoch of the resident memory summed over
the process and its workers (``peak_rss_mib``; pages shared between them count once per process, so this
over-counts) and of their proportional set sizes (``peak_pss_mib``, shared pages split). Targets: peak memory
under 2 GiB and the same for both folder sizes within 20% (it must not grow with the folder).

    python -m benchmarks.folder_data [--sizes 1000 5000] [--workers 0 1 2] [--folders DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 400))
CLASSES = 10
BATCH = 64


def make_folder(root: Path, n: int) -> Path:
    """The folder of ``n`` training JPEGs (made once; a finished one has a ``.done`` marker)."""
    from common.data import make_image_folder

    folder = root / f"imagenet_like_{n}"
    if not (folder / ".done").is_file():
        t0 = time.perf_counter()
        make_image_folder(folder, classes=CLASSES, per_class=n // CLASSES, test_per_class=2, sizes=SIZES,
                          formats="jpeg", corrupt=False)
        (folder / ".done").write_text("")
        print(f"made {folder} in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


class TreeMemory(threading.Thread):
    """Samples the summed RSS (every 50 ms) and PSS (every 2 s: reading smaps is slow) of this process and its
    children."""

    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.peak_rss = self.peak_pss = 0
        self.stop = threading.Event()

    def _procs(self):
        return [self.me, *self.me.children(recursive=True)]

    def run(self) -> None:
        import psutil

        last_pss = 0.0
        while not self.stop.is_set():
            procs, rss = self._procs(), 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)
            if time.perf_counter() - last_pss > 2.0:
                last_pss, pss = time.perf_counter(), 0
                for p in procs:
                    try:
                        pss += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                self.peak_pss = max(self.peak_pss, pss)
            time.sleep(0.05)


def one_epoch(folder: str, workers: int) -> dict:
    """Runs in a fresh process: one epoch of training batches; returns the figures."""
    import torchvision.transforms.v2.functional  # noqa: F401 - imported before the clock starts

    from common.data import load_image_folder
    from common.threads import apply_thread_defaults

    threads = apply_thread_defaults(0)  # the command-line default; the main process collates when workers=0
    mon = TreeMemory()
    mon.start()
    data = load_image_folder(folder, workers=workers, val_size=0)
    n = 0
    t0 = time.perf_counter()
    for x, y in data.train_batches(epoch=1, seed=0, batch_size=BATCH):
        n += len(y)
    dt = time.perf_counter() - t0
    time.sleep(0.2)
    mon.stop.set()
    mon.join()
    data.close()
    return {"n_images": data.n_train, "workers": workers, "images_seen": n, "torch_threads": threads,
            "peak_rss_mib": round(mon.peak_rss / 2**20, 1), "peak_pss_mib": round(mon.peak_pss / 2**20, 1),
            "images_per_s": round(n / dt, 1), "epoch_s": round(dt, 2)}


def table(name: str = "folder_data") -> str:
    """The Markdown table of ``benchmarks/results/<name>.json``."""
    from benchmarks._meta import RESULTS

    res = json.loads((RESULTS / f"{name}.json").read_text())
    lines = ["| images in train/ | loader workers | peak RSS, process tree (MiB) | peak PSS (MiB) | images/s |",
             "|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['n_images']:,} | {r['workers']} | {r['peak_rss_mib']:.0f} | {r['peak_pss_mib']:.0f} | "
                     f"{r['images_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folders", default=str(Path(tempfile.gettempdir()) / "nnq_folder_bench"),
                    help="where the generated folders are kept between runs")
    ap.add_argument("--name", default="folder_data")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of the stored results and exit")
    ap.add_argument("--epoch", nargs=2, metavar=("FOLDER", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.epoch:
        print(json.dumps(one_epoch(args.epoch[0], int(args.epoch[1]))))
        return
    if args.table:
        print(table(args.name))
        return

    from benchmarks._meta import write_result

    folders = {n: make_folder(Path(args.folders), n) for n in args.sizes}
    env = {**os.environ, "NNQ_PROGRESS": "0"}
    rows = []
    for n, folder in folders.items():
        for w in args.workers:
            out = subprocess.run([sys.executable, "-m", "benchmarks.folder_data", "--epoch", str(folder), str(w)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    by = {(r["n_images"], r["workers"]): r for r in rows}
    small, large = min(args.sizes), max(args.sizes)
    growth = {str(w): round(by[(large, w)]["peak_rss_mib"] / by[(small, w)]["peak_rss_mib"], 3)
              for w in args.workers if (small, w) in by and (large, w) in by}
    path = write_result(args.name, {
        "what": "one training epoch through the streamed folder path: peak memory of the process tree, images/s",
        "setup": f"{CLASSES} classes of RGB JPEGs (q90) of sizes {', '.join(f'{w}x{h}' for w, h in SIZES)}; "
                 f"RandomResizedCrop 224 + flip + normalise, batches of {BATCH}, no model; each row a fresh process; "
                 f"files on {args.folders}",
        "targets": "peak_rss_mib < 2048 and the larger folder within 20% of the smaller one",
        "rss_ratio_largest_vs_smallest_folder": growth,
        "below_2gib": all(r["peak_rss_mib"] < 2048 for r in rows),
        "rows": rows, "load_average_after": [round(v, 2) for v in os.getloadavg()]})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
