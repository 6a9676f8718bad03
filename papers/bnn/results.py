"""Figures, tables and deck of the BNN package from its approved runs.

``python -m papers.bnn.results`` rebuilds everything from ``papers/bnn/results/runs/`` (no training);
``--run`` first trains and approves the presets of the grid that have no approved run;
``--out-dir DIR`` writes elsewhere than ``papers/bnn/results/``.
"""

from __future__ import annotations

from pathlib import Path

from common.deck import Bullets, Figure, Formula, Source, Table, build_paper_deck, runs_source
from common.report import markdown_table, save_figure, slide_figure, summary_footer, update_readme_block
from common.results import results_cli, results_target
from common.results import run_missing as common_run_missing
from papers.bnn.config import PRESETS
from papers.bnn.paper_numbers import TEST_ERROR
from papers.bnn.train import main

PAPER = "bnn"
GRID = ("quick", "mnist_mlp")  # presets run by --run on a CPU; the study row and the GPU presets are run by hand
README = Path(__file__).with_name("README.md")
TITLE = "Binarized Neural Networks"
CITATION = "Courbariaux, Hubara, Soudry, El-Yaniv, Bengio — NeurIPS 2016 (arXiv 1602.02830)"
CITE = Source(CITATION, ("papers/bnn/paper_numbers.py",))

IDEA = [
    "Weights and hidden activations are constrained to ±1 by Sign in the forward pass (Eq. 1).",
    "Real 'latent' weights accumulate the gradients; Sign's gradient is the straight-through estimator "
    "cancelled outside [−1, 1] (Eq. 4); latent weights are clipped to [−1, 1] after every step (Alg. 1).",
    "Batch normalisation follows every binary layer; the first layer's input stays real, the last layer's "
    "output is not binarized.",
    "At inference every multiply-accumulate is an XNOR + popcount and a weight takes 1 bit: 32× less memory.",
]
FORMULAS = [
    Formula("Eq. (1)", r"$x^b = \mathrm{Sign}(x) = +1$ if $x \geq 0$, else $-1$", "papers/bnn/bnn.py: binarize"),
    Formula("Eq. (4)", r"$g_r = g_q\, 1_{|r| \leq 1}$", "papers/bnn/bnn.py: SignSTE.backward",
            "the straight-through estimator of Sign, cancelled where |r| > 1"),
    Formula("Alg. 1", r"$W^b_k = \mathrm{Sign}(W_k),\quad a^b_k = \mathrm{Sign}(a_k)$",
            "papers/bnn/bnn.py: BinaryLinear, BinaryConv2d, BinaryActivation"),
    Formula("Alg. 1", r"$W_k \leftarrow \mathrm{Clip}(W_k - \eta\, g_{W_k},\, -1,\, 1)$",
            "papers/bnn/bnn.py: clip_latent_weights_"),
    Formula("Loss", r"$L = \sum_i \max(0,\, 1 - y_i\, o_i)^2$", "papers/bnn/bnn.py: square_hinge_loss",
            "the square hinge loss of the MNIST experiments, y = ±1 per class"),
]
DEVIATIONS = [
    "Adam instead of shift-based AdaMax, standard BN instead of shift-based BN (Alg. 3–4).",
    "One LR for all parameters: no per-layer Glorot LR scaling (in the official code, not in the text).",
    "Deterministic binarization only (Eq. 1); stochastic binarization (Eq. 2–3) is not implemented.",
    "The float twin is the same network with real weights and ReLU (the paper compares with published numbers).",
    "Dropout in the MNIST presets is our choice for the short CPU budget.",
    "Budget: mnist_mlp trains 3×1536 units for 30 epochs (the paper: 3×4096, 1000 epochs; the paper preset).",
    "Study row: the shared float ResNet-20 with Sign activations and binary block weights, fine-tuned for the "
    "setting's steps with cross-entropy (the paper's square hinge is --loss sq_hinge); CIFAR-10 is the JPEG q75 copy.",
]
KNOWN_GAPS = [
    "No XNOR-popcount kernel here: the BNN package measures memory (the packed file); speed is papers/xnor's.",
    "The CIFAR-10 ConvNet and the paper's 1000-epoch MNIST run need a GPU; no approved run of them yet.",
    "SVHN is not wired up (no copy of it on these machines).",
]


def run_missing(grid=GRID) -> None:
    """Train and approve each preset of ``grid`` that has no approved run yet."""
    common_run_missing(PAPER, grid, PRESETS, main)


def _arch(run) -> str:
    c = run.config
    if c["arch"] == "mlp":
        return f"MLP {'×'.join(map(str, c['hidden']))}"
    return "ResNet-20" if c["arch"] == "resnet20" else "ConvNet"


def _label(run) -> str:
    s = run.summary
    if s.setting:
        return f"study {s.setting}, {_arch(run)}, {s.extra['steps']} steps"
    quick = ", CPU-sized" if s.preset == "quick" else ""
    return f"{s.dataset}, {_arch(run)}, {s.extra['epochs']} ep. ({s.preset}{quick})"


def _paper_key(run) -> str | None:
    ds = run.summary.dataset.upper()
    if run.summary.setting:
        return None  # the paper has no ResNet: the study row has no paper counterpart
    return "MNIST" if ds.startswith("MNIST") else "CIFAR-10" if ds.startswith("CIFAR-10") else None


def _error(value: float) -> str:
    return f"{100.0 - value:.2f}"


def build(out_dir: Path | None = None) -> dict[str, Path]:
    """Write figures, tables and the deck from the approved runs; return the paths written."""
    runs, out, default_out = results_target(PAPER, out_dir)
    written: dict[str, Path] = {}

    figures = []
    for run in runs:
        s = run.summary
        fig, ax = slide_figure()
        if s.setting:
            pts = [(m["step"], 100 - m["val_top1"]) for m in run.metrics if m["tag"] == "bnn" and "val_top1" in m]
            ax.plot(*zip(*pts), marker="o", label="BNN ResNet-20 (W1A1), validation split")
            if s.fp_value is not None:
                ax.axhline(100 - s.fp_value, color="0.4", ls="--", label="float reference (test)")
            ax.set(xlabel="optimizer step", ylabel="error (%)", ylim=(0, None))
        else:
            for tag, label in ((("float", f"float twin (ReLU, fp32), {run.config['baseline_epochs']} epochs"),
                                ("bnn", f"BNN (±1 weights and activations), {run.config['epochs']} epochs"))):
                key = "val_top1" if any("val_top1" in m for m in run.metrics) else "test_top1"
                pts = [(m["epoch"], 100 - m[key]) for m in run.metrics if m["tag"] == tag and key in m]
                if pts:
                    ax.plot(*zip(*pts), label=f"{label}, {key[:-5].replace('val', 'validation')} split")
            key = _paper_key(run)
            for impl, ls in (("Theano", ":"), ("Torch7", "-.")) if key else ():
                err, ref = TEST_ERROR[(key, impl)]
                ax.axhline(err, color="0.3", ls=ls, lw=1.2, label=f"paper, {impl} ({ref}): {err:.2f}% test error")
            ax.set(xlabel="epoch", ylabel="error (%)", ylim=(0, None))
        ax.legend()
        name = f"curves_{s.preset}"
        png, _ = save_figure(fig, out, name, footer=summary_footer(s))
        figures.append(Figure(f"Error per {'step' if s.setting else 'epoch'}: {_label(run)}", png, runs_source([run])))
        written[name] = png

    header = ["Run", "Test error (%)", "Float error (%)", "Paper error (%)", "Model bits", "File (B)", "× vs fp32 file"]
    rows = []
    for run in runs:
        s, key = run.summary, _paper_key(run)
        paper = "; ".join(f"{impl} {TEST_ERROR[(key, impl)][0]:.2f}" for impl in ("Theano", "Torch7")) if key else "—"
        rows.append([_label(run), _error(s.value), "—" if s.fp_value is None else _error(s.fp_value), paper,
                     s.model_bits, s.size_bytes, f"{s.compression_ratio:.1f}×"])
    md = markdown_table(header, rows)
    (out / "accuracy.md").write_text(md + "\n")
    written["accuracy"] = out / "accuracy.md"

    head = ["Setting", "Paper error (%)", "Ours error (%)", "Ours: net, budget", "File vs fp32"]
    head_rows = []
    for run in runs:
        key = _paper_key(run)
        if key is None:
            continue
        for impl in ("Theano", "Torch7"):
            err, ref = TEST_ERROR[(key, impl)]
            net = "3×4096" if impl == "Theano" else "3×2048"
            head_rows.append([f"{key} MLP, {impl} ({net}, {ref})", f"{err:.2f}", _error(run.summary.value),
                              f"{_arch(run)}, {run.summary.extra['epochs']} ep.",
                              f"{run.summary.compression_ratio:.1f}× smaller"])
    paper_runs = [r for r in runs if _paper_key(r)]
    headline = Table("Paper vs ours: test error", head, head_rows,
                     runs_source(paper_runs, extra_files=("papers/bnn/paper_numbers.py",)),
                     legend="One seed each; ours is smaller and far shorter than the paper's nets (Deviations).")
    study_rows = [r for r in runs if r.summary.setting]
    appendix = [Table("Every approved run (quick = CPU minutes, not paper scale)", header, rows, runs_source(runs))]
    written["deck"] = build_paper_deck(
        out / "bnn_deck.pptx", title=TITLE, subtitle=CITATION, idea=Bullets("The idea", IDEA, CITE),
        idea_figure=None, formulas=FORMULAS, headline=headline, figures=figures,
        deviations=Bullets("Deviations", DEVIATIONS, CITE, numbered=True),
        known_gaps=Bullets("Known gaps", KNOWN_GAPS + _study_gap(study_rows), CITE),
        takeaways=Bullets("Takeaways", _takeaways(runs), runs_source(runs)), appendix=appendix)
    if default_out:
        update_readme_block(README, "headline", markdown_table(head, head_rows)
                            + "\n\n![Error per epoch](results/curves_mnist_mlp.png)" * any(
                                r.summary.preset == "mnist_mlp" for r in runs))
        update_readme_block(README, "results", md)
    return written


def _study_gap(study_rows) -> list[str]:
    edge = [r for r in study_rows if r.summary.extra["lr"] == max(r.summary.extra["lr_grid"])]
    gaps = [f"Study row, seed {r.summary.seed}: the validation pilots chose the grid's largest LR "
            f"({r.summary.extra['lr']:g}); a larger one was not tried." for r in edge]
    gaps += ["Study row: one seed; the BNN's binary shortcuts (Sign after each block) are the paper's rule applied "
             "to a ResNet, which the paper does not train."] if study_rows else []
    if study_rows:
        return gaps
    return ["Study setting cifar10_resnet20: no approved run yet (python -m papers.bnn.train --preset "
            "cifar10_resnet20)."]


def _takeaways(runs) -> list[str]:
    out = []
    for run in runs:
        s = run.summary
        if s.fp_value is None:
            continue
        ref = s.fp_recipe if s.setting is None else "the setting's float reference"
        out.append(f"{_label(run)}: BNN error {_error(s.value)}%, float {_error(s.fp_value)}% ({ref}); "
                   f"BNN − float: {s.fp_value - s.value:+.2f} pts; file {s.compression_ratio:.1f}× smaller than fp32.")
    out.append("The 1-bit file reloads into a model that predicts exactly what the trained one predicts; "
               "BatchNorm and the float first/last layers keep it from reaching 32×.")
    return out


def cli(argv: list[str] | None = None) -> None:
    results_cli(PAPER, build=build, run=run_missing, grid=GRID, argv=argv)


if __name__ == "__main__":
    cli()
