"""Decks rendered by LibreOffice lose no word: ../shared/tools/deckcheck.py's check on a stress deck and on
every committed deck.

All decks are converted to PDF in one ``soffice`` call (with a private profile, so a LibreOffice already
running elsewhere does not interfere); each slide's words (python-pptx) must all be on its rendered page
(pdftotext), as deckcheck compares them. Skips, with the reason, where deckcheck, ``soffice`` or
``pdftotext`` is missing (``.ci/run`` installs the latter two on a Debian machine).
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from common import deck
from common.paths import REPO_ROOT

CHECK_COMMITTED_DECKS = True
"""Check every committed deck too (papers/*/results/*.pptx, study/results/*.pptx)."""

COMMITTED = sorted(REPO_ROOT.glob("papers/*/results/*.pptx")) + sorted(REPO_ROOT.glob("study/results/*.pptx"))


def _deckcheck_path() -> Path | None:
    """``../shared/tools/deckcheck.py`` beside the checkout (or beside a folder holding it: a worktree)."""
    candidates = [Path(os.environ["NNQ_DECKCHECK"])] if os.environ.get("NNQ_DECKCHECK") else [
        base / "shared" / "tools" / "deckcheck.py" for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent)]
    return next((path for path in candidates if path.is_file()), None)


def _skip_reason() -> str | None:
    if _deckcheck_path() is None:
        where = os.environ.get("NNQ_DECKCHECK") or REPO_ROOT.parent / "shared/tools/deckcheck.py"
        return f"deckcheck.py not found at {where} (set NNQ_DECKCHECK to its path)"
    missing = [tool for tool in ("soffice", "pdftotext") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} missing (Debian: apt-get install libreoffice-impress poppler-utils)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _stress_deck(out: Path) -> Path:
    """A paper deck with what broke decks before: long tables and titles, many formulas, wide numbers."""
    src = deck.Source("runs: lenet5_mnist s0–3 (MNIST) · commit 59c590b",
                      ("papers/deep_compression/results/runs/a/summary.json",))
    tall = out / "tall.png"
    Image.new("RGB", (600, 700), "white").save(tall)
    wide = out / "wide.png"
    Image.new("RGB", (1600, 900), "white").save(wide)
    numbers = [[f"ResNet-20 3x3 conv {c}->{c} @ {s}x{s}, batch {b}", 123456789.123 * b, 0.000123, "1.49", "37.6×",
                deck.mean_sd([0.76, 0.86, 0.81, 0.81]), 99.15, 1_724_920 + b, "Supercalifragilisticexpialidocious"]
               for c, s in ((16, 32), (32, 16), (64, 8)) for b in (1, 64)]
    layers = [[f"layer{i}.conv{i % 3}", f"{i * 1234.5678:.4f}", i * 7919 % 10007, "kept " * (i % 5) + "weights",
               f"{(i * 37) % 41 + 0.5:.1f}×"] for i in range(40)]
    formulas = [deck.Formula(f"Eq. ({i})", r"$\alpha^* = \frac{1}{n}\Vert W\Vert_{\ell 1}, \quad "
                             r"\frac{\partial \mathcal{L}}{\partial C_k} = \sum_{i,j} \frac{\partial \mathcal{L}}"
                             r"{\partial W_{ij}}\, \mathbb{1}(I_{ij} = k)$" * (1 + i % 2),
                             f"papers/deep_compression/share.py: CodebookLookup.backward_{i}",
                             note="the centroids' gradient: the sum of their members' gradients" if i % 3 else "")
                for i in range(9)]
    words = "a deviation that is explained at length, citing the paper's section and table, "
    return deck.build_paper_deck(
        out / "stress_deck.pptx",
        title="Deep Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and "
              "Huffman Coding",
        subtitle="Han, Mao, Dally — ICLR 2016 (pruning: Han, Pool, Tran, Dally — NeurIPS 2015)",
        idea=deck.Bullets("Idea", [words * 2, "Short one.", words * 3]),
        idea_figure=deck.Figure("The method", tall, src),
        formulas=formulas,
        headline=deck.Table("Paper vs ours: top-1 error, size and compression rate of every network",
                            ["Setting", "Big", "Small", "x", "Ratio", "Ours (mean ± sd)", "Top-1", "Bytes", "Word"],
                            numbers, deck.combine(src, deck.paper_source("deep_compression", "Table 1")),
                            legend="Big: bytes × batch; Small: a tiny number at two decimals; Word: one long word"),
        figures=[deck.Figure("Memory per builder: sign bits and α apart, everything counted (xnor_size.json)",
                             wide, src)],
        deviations=deck.Bullets("Deviations", [f"{k}. {words * 2}" for k in range(1, 8)]),
        known_gaps=deck.Bullets("Known gaps", [words * 4 for _ in range(5)]),
        takeaways=deck.Bullets("Takeaways", ["Pruning gives about 10×, quantization 3× more, Huffman 1.2× more."]),
        appendix=[deck.Table("Per layer, every seed, every stage of the pipeline (stages.json)",
                             ["Layer", "Bytes", "Count", "Comment", "Ratio"], layers, src,
                             legend="Ratio: fp32 bytes over ours")],
    )


def _load_deckcheck():
    spec = importlib.util.spec_from_file_location("deckcheck", _deckcheck_path())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Every deck under test rendered to PDF in one soffice call: {name: (pptx, pdf)}."""
    out = tmp_path_factory.mktemp("decks")
    decks = [_stress_deck(out)] + (COMMITTED if CHECK_COMMITTED_DECKS else [])
    pdf_dir = out / "pdf"
    profile = (out / "lo-profile").as_uri()
    subprocess.run(["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(pdf_dir), *map(str, decks)], capture_output=True, check=True, timeout=300)
    return {d.name: (d, pdf_dir / f"{d.stem}.pdf") for d in decks}


def _lost_words(rendered, name):
    check = _load_deckcheck()
    from pptx import Presentation

    pptx, pdf = rendered[name]
    assert pdf.is_file(), f"LibreOffice did not render {pptx}"
    lines = []
    for i, slide in enumerate(Presentation(str(pptx)).slides, 1):
        missing = check.slide_words(slide) - check.page_words(pdf, i)
        if missing:
            lines.append(f"slide {i}: {' '.join(list(missing.elements())[:8])}")
    return lines


def test_stress_deck_loses_no_word(rendered):
    assert _lost_words(rendered, "stress_deck.pptx") == []


@pytest.mark.skipif(not CHECK_COMMITTED_DECKS, reason="CHECK_COMMITTED_DECKS is off")
@pytest.mark.parametrize("pptx", COMMITTED, ids=[str(p.relative_to(REPO_ROOT)) for p in COMMITTED])
def test_committed_deck_loses_no_word(rendered, pptx):
    assert _lost_words(rendered, pptx.name) == [], f"{pptx.relative_to(REPO_ROOT)}: regenerate it with results.py"
