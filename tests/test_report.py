"""Tests of common.report: slide style, figure files, tables, README blocks, decks."""

import csv

import matplotlib.image as mimage
import numpy as np
import pytest
from PIL import Image
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


def test_summary_footer_reads_a_summary_or_a_dict():
    from common.summary import Summary

    s = Summary(paper="bnn", preset="quick", dataset="digits (sklearn 8x8)", commit="abcdef123456", dirty=True)
    assert report.summary_footer(s) == f"{report.QUICK_LABEL} · data: digits (sklearn 8x8) · commit abcdef1+dirty"
    assert report.summary_footer(s.to_dict()) == report.summary_footer(s)


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
    with Image.open(tmp_path / "f.png") as im:  # the band a deck slide crops away
        band = float(im.info[report.FOOTER_BAND_KEY])
    assert band == pytest.approx(0.45 / 7.5)
    assert band * fig.bbox.height > fig.texts[-1].get_window_extent(renderer).y1  # the footer lies inside the band


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
    assert report.readme_block(readme, "results") == "| a |\n|---|"  # what was written, read back


def test_update_readme_block_errors_without_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Paper\n<!-- BEGIN results -->\n", encoding="utf-8")
    with pytest.raises(NnqError, match="END results"):
        report.update_readme_block(readme, "results", "x")
    assert readme.read_text(encoding="utf-8") == "# Paper\n<!-- BEGIN results -->\n"
    with pytest.raises(NnqError, match="END results"):
        report.readme_block(readme, "results")


def test_build_deck_slides_size_and_title(tmp_path):
    fig_png = report.save_figure(_figure(), tmp_path, "curve", footer="preset: quick")[0]
    long_rows = [[f"row {i}", float(i)] for i in range(30)]
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
    # title, idea, equation map, results, the 30-row table on 2 slides (measured), figure
    assert len(slides) == 7
    assert prs.slide_width / prs.slide_height == pytest.approx(16 / 9, abs=1e-3)
    assert slides[0].shapes.title.text == "Binarized Neural Networks"
    assert [s.shapes.title.text for s in slides[1:]] == [
        "Idea", "Equation map", "Results", "Long (1/2)", "Long (2/2)", "Accuracy",
    ]
    for s in slides[1:]:
        assert [sh.text_frame.text for sh in s.shapes if sh.name == "Footer"] == [
            "preset: quick · data: digits · commit abc1234"]
    pic = [sh for sh in slides[-1].shapes if sh.shape_type == 13][0]  # MSO_SHAPE_TYPE.PICTURE
    assert pic.left >= 0 and pic.top + pic.height <= prs.slide_height
    # the PNG's own footer band is cropped: what shows is 16:9 minus the band
    band = report._FOOTER_HEIGHT_IN / report.FIGSIZE[1]
    assert pic.crop_bottom == pytest.approx(band, abs=1e-4)
    assert pic.width / pic.height == pytest.approx(16 / 9 / (1 - band), abs=1e-2)


def test_build_deck_rejects_missing_figure(tmp_path):
    with pytest.raises(NnqError, match="missing"):
        report.build_deck(
            tmp_path / "d.pptx", title="t", subtitle="s", idea=[], equation_map={}, tables=[],
            figures=[("F", tmp_path / "nope.png")],
        )


def test_units_by_hand():
    assert report.fmt_mib(1_724_920) == "1.65 MiB"  # 1724920 / 1048576 = 1.645
    assert report.fmt_mib(45_894) == "0.044 MiB"  # 0.04377
    assert report.fmt_mib(3 * 2**20) == "3.00 MiB"
    assert report.fmt_mib(1_000) == "0.00095 MiB"
    assert report.fmt_ratio(37.585) == "37.6×"
    assert report.fmt_ratio(1.149) == "1.15×"
    assert report.fmt_ratio(120.4) == "120×"
    assert report.fmt_pct(99.154) == "99.15%"
    assert report.fmt_pct(0.5, 1, fraction=True) == "50.0%"


def test_bar_labels_above_positive_below_negative_bars():
    _fig, ax = report.slide_figure()
    bars = ax.bar([0, 1, 2], [3.0, -2.0, 1.0])
    notes = report.bar_labels(ax, bars, "{:.1f}")
    assert [a.get_text() for a in notes] == ["3.0", "-2.0", "1.0"]
    assert [a.xy[1] for a in notes] == [3.0, -2.0, 1.0]  # at the far end of each bar
    assert [a.get_va() for a in notes] == ["bottom", "top", "bottom"]
    assert [a.xyann[1] > 0 for a in notes] == [True, False, True]
    lo, hi = ax.get_ylim()
    assert lo < -2.0 and hi > 3.0  # room for the labels
    with pytest.raises(NnqError, match="one value per bar"):
        report.bar_labels(ax, bars, values=[1.0])


def test_reference_line_inside_and_outside_the_range():
    _fig, ax = report.slide_figure()
    ax.plot([0, 1], [98.0, 99.0])
    ax.set_ylim(97.5, 99.5)
    line = report.reference_line(ax, 99.2, "paper", ref="Table 1")
    assert line.get_linestyle() == "--" and line.get_color() == report.PAPER_COLOR
    assert any(t.get_text() == "paper (Table 1)" for t in ax.texts)
    arrow = report.reference_line(ax, 42.0, "paper, AlexNet", ref="Table 2")
    assert arrow.get_text() == "paper, AlexNet (Table 2): 42" and arrow.xy == (1, 0)  # an arrow at the bottom edge
    assert ax.get_ylim() == (97.5, 99.5)  # the paper's far-away number does not flatten the plot
    report.reference_line(ax, 98.2, "paper, left", loc="left")
    [left] = [t for t in ax.texts if t.get_text() == "paper, left"]
    assert left.xy == (0, 98.2) and left.get_ha() == "left"


def test_speedup_bars_grow_from_one_and_go_log_for_wide_spans():
    _, ax = report.slide_figure()
    bars = report.speedup_bars(ax, ["a", "b", "c"], [1.5, 0.8, 1.1])
    assert [b.get_y() for b in bars] == [1.0, 1.0, 1.0]
    assert [round(b.get_height(), 6) for b in bars] == [0.5, -0.2, 0.1]
    assert ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.texts] == ["1.50×", "0.80×", "1.10×"]
    assert bars[1].get_facecolor() != bars[0].get_facecolor()  # a slow-down has its own colour
    lo, hi = ax.get_ylim()
    assert lo < 0.8 and hi > 1.5
    _fig, ax = report.slide_figure()
    report.speedup_bars(ax, ["gemm", "conv"], [36.1, 0.86])
    assert ax.get_yscale() == "log"
    with pytest.raises(NnqError, match="positive"):
        report.speedup_bars(ax, ["a"], [0.0])


def test_focus_ylim_zooms_on_the_values_and_annotates_the_outlier():
    _, ax = report.slide_figure()
    ys = [99.15, 99.2, 99.25, 99.16, 11.0]
    ax.plot(range(5), ys)
    lo, hi = report.focus_ylim(ax, ys, pad=0.1)
    assert (lo, hi) == pytest.approx((99.14, 99.26))
    assert ax.get_ylim() == pytest.approx((99.14, 99.26))
    [note] = [t for t in ax.texts if t.get_text() == "11"]
    assert note.xy == (4.0, 0)  # at x of the outlier, on the bottom edge
    _fig, ax = report.slide_figure()
    assert report.focus_ylim(ax, [1.0, 2.0, 3.0], pad=0.5) == pytest.approx((0.0, 4.0))  # n < 4: no outliers
