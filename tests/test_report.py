"""Tests of common.report: slide style, figure files, tables, README blocks, decks."""

import csv

import matplotlib.image as mimage
import numpy as np
import pytest
from pptx import Presentation

from common import report
from common.errors import NnqError

OKABE_ITO_HEX = {
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
}


def _figure():
    fig, ax = report.slide_figure()
    x = np.arange(10)
    for k in range(3):
        ax.plot(x, x * (k + 1), label=f"curve {k}")
    ax.set(title="accuracy", xlabel="epoch", ylabel="top-1 (%)")
    ax.legend()
    return fig


def test_palette_is_okabe_ito_and_cycle_differs_in_greyscale():
    style = report.slide_style()
    colours = [c.upper() for c in style["axes.prop_cycle"].by_key()["color"]]
    assert set(colours) == OKABE_ITO_HEX
    assert len(set(colours)) >= 7
    cycle = list(style["axes.prop_cycle"])
    # Without colour, every curve still has its own (line style, marker) pair.
    assert len({(str(p["linestyle"]), p["marker"]) for p in cycle}) == len(cycle)
    # Yellow is the palette's weakest contrast on white: it comes last.
    assert colours[-1] == "#F0E442"


def test_slide_figure_is_16_9_with_large_fonts():
    fig, axes = report.slide_figure(1, 2)
    w, h = fig.get_size_inches()
    assert w / h == pytest.approx(16 / 9)
    assert axes.shape == (2,)
    assert axes[0].title.get_fontsize() >= 16
    axes[0].set_title("t")
    assert axes[0].title.get_fontsize() > axes[0].xaxis.get_ticklabels()[0].get_fontsize() >= 16
    assert not axes[0].spines["top"].get_visible()


def test_footer_says_quick_preset_and_short_commit():
    quick = report.footer_text("quick", "digits (sklearn 8x8)", "abc1234deadbeef")
    assert "quick preset" in quick
    assert "digits (sklearn 8x8)" in quick
    assert quick.endswith("commit abc1234")
    paper = report.footer_text("paper", "MNIST", None, dirty=True)
    assert "quick" not in paper and "preset: paper" in paper and paper.endswith("unknown+dirty")


def test_save_figure_writes_16_9_png_and_deterministic_pdf(tmp_path):
    footer = report.footer_text("quick", "digits", "abc1234")
    fig = _figure()
    paths = report.save_figure(fig, tmp_path / "figs", "acc", footer=footer)
    png, pdf = paths
    assert [p.name for p in paths] == ["acc.png", "acc.pdf"]
    assert footer in [t.get_text() for t in fig.texts]
    h, w = mimage.imread(png).shape[:2]
    assert w / h == pytest.approx(16 / 9, abs=1e-3) and w >= 150 * 13
    assert pdf.read_bytes().startswith(b"%PDF")
    report.save_figure(_figure(), tmp_path / "again", "acc", footer=footer)
    assert (tmp_path / "again" / "acc.pdf").read_bytes() == pdf.read_bytes()


def test_save_figure_footer_is_drawn_below_the_axes(tmp_path):
    fig = _figure()
    report.save_figure(fig, tmp_path, "f", footer="preset: paper · data: x · commit 1")
    renderer = fig.canvas.get_renderer()
    footer_top = fig.texts[-1].get_window_extent(renderer).y1
    axes_bottom = min(ax.get_tightbbox(renderer).y0 for ax in fig.axes)
    assert footer_top < axes_bottom


def test_save_figure_requires_a_footer(tmp_path):
    with pytest.raises(NnqError, match="footer"):
        report.save_figure(_figure(), tmp_path, "f", footer=" ")


def test_markdown_table_exact_lines():
    md = report.markdown_table(["a", "b|c"], [[1, 2.345], [None, "x"]])
    assert md.splitlines() == ["| a | b\\|c |", "|---|---|", "| 1 | 2.35 |", "| — | x |"]
    with pytest.raises(NnqError, match="cells"):
        report.markdown_table(["a"], [[1, 2]])


def test_comparison_table_delta_and_csv_round_trip(tmp_path):
    rows = [
        {"setting": "MNIST MLP", "ours": 98.5, "paper": 99.04, "ref": "Table 1", "unit": "%"},
        {"setting": "CIFAR-10", "ours": None, "paper": 88.6, "ref": "Table 1"},
        {"setting": "size", "ours": 40, "paper": 32, "ref": "Sec. 4", "note": "bytes"},
    ]
    md = report.comparison_table(rows, tmp_path, "cmp")
    lines = md.splitlines()
    assert lines[0] == "| Setting | Ours | Paper (ref) | Δ | Note |"
    assert lines[2] == "| MNIST MLP (%) | 98.50 | 99.04 (Table 1) | -0.54 |  |"
    assert (tmp_path / "cmp.md").read_text(encoding="utf-8") == md
    with open(tmp_path / "cmp.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Setting", "Ours", "Paper (ref)", "Δ", "Note"]
    assert float(table[1][3]) == pytest.approx(98.5 - 99.04, abs=5e-3)
    assert table[2][3] == "—"
    assert table[3][1:4] == ["40", "32 (Sec. 4)", "+8"]


def test_comparison_table_rejects_unknown_keys(tmp_path):
    with pytest.raises(NnqError, match="setting"):
        report.comparison_table([{"setting": "a", "ours": 1, "papr": 2}], tmp_path, "x")


def test_update_readme_block_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Paper\n\n## Results\n", "\n## Known gaps\n- none\n"
    readme.write_text(f"{before}<!-- BEGIN results -->\nold\n<!-- END results -->{after}", encoding="utf-8")
    assert report.update_readme_block(readme, "results", "| a |\n|---|\n")
    text = readme.read_text(encoding="utf-8")
    assert text == f"{before}<!-- BEGIN results -->\n| a |\n|---|\n<!-- END results -->{after}"
    assert not report.update_readme_block(readme, "results", "| a |\n|---|\n")


def test_update_readme_block_errors_without_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Paper\n<!-- BEGIN results -->\n", encoding="utf-8")
    with pytest.raises(NnqError, match="END results"):
        report.update_readme_block(readme, "results", "x")
    assert readme.read_text(encoding="utf-8") == "# Paper\n<!-- BEGIN results -->\n"


def test_build_deck_slides_size_and_title(tmp_path):
    fig_png = report.save_figure(_figure(), tmp_path, "curve", footer="preset: quick")[0]
    long_rows = [[f"row {i}", float(i)] for i in range(13)]
    path = report.build_deck(
        tmp_path / "deck" / "bnn.pptx",
        title="Binarized Neural Networks",
        subtitle="Courbariaux et al., NeurIPS 2016",
        idea=["Binarize weights and activations.", "Train with a straight-through estimator."],
        equation_map={"Eq. (4)": "papers/bnn/binarize.py: SignSTE"},
        tables=[("Results", ["Setting", "Ours"], [["MNIST", 98.5]]), ("Long", ["k", "v"], long_rows)],
        figures=[("Accuracy", fig_png)],
        footer="preset: quick · data: digits · commit abc1234",
    )
    prs = Presentation(path)
    slides = list(prs.slides)
    # title, idea, equation map, results, long table on 2 slides, figure
    assert len(slides) == 7
    assert prs.slide_width / prs.slide_height == pytest.approx(16 / 9, abs=1e-3)
    assert slides[0].shapes.title.text == "Binarized Neural Networks"
    assert [s.shapes.title.text for s in slides[1:]] == [
        "Idea", "Equation map", "Results", "Long (1/2)", "Long (2/2)", "Accuracy",
    ]
    pic = [sh for sh in slides[-1].shapes if sh.shape_type == 13][0]  # MSO_SHAPE_TYPE.PICTURE
    assert pic.left >= 0 and pic.top + pic.height <= prs.slide_height
    assert pic.width / pic.height == pytest.approx(16 / 9, abs=1e-2)


def test_build_deck_rejects_missing_figure(tmp_path):
    with pytest.raises(NnqError, match="missing"):
        report.build_deck(
            tmp_path / "d.pptx", title="t", subtitle="s", idea=[], equation_map={}, tables=[],
            figures=[("F", tmp_path / "nope.png")],
        )
