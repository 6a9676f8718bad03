"""Tests of common.deck: measured tables, titles, bullets and formulas; footers, notes, structure, sources."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageFont
from PIL.PngImagePlugin import PngInfo
from pptx import Presentation

from common import deck
from common.errors import NnqError
from common.paths import REPO_ROOT
from common.report import FOOTER_BAND_KEY, QUICK_LABEL
from common.summary import Summary

EMU_PER_PT = 12700
SRC = deck.Source("runs: lenet5_mnist s0–3 (MNIST) · commit 59c590b",
                  ("papers/deep_compression/results/runs/r0/summary.json", "benchmarks/results/x.json"))


def _pil_width(text, size, bold=False):
    """Width in points of one line, measured directly with the TTF the deck measures with (no safety factor)."""
    font = ImageFont.truetype(deck.measuring_font(bold), 1000)
    return font.getlength(text) * size / 1000


def _pt(emu):
    return emu / EMU_PER_PT


def _png(path, size=(800, 450), band=None):
    info = PngInfo()
    if band is not None:
        info.add_text(FOOTER_BAND_KEY, f"{band:.6f}")
    Image.new("RGB", size, "white").save(path, pnginfo=info)
    return path


def _save(d, tmp_path, name="d.pptx"):
    return Presentation(str(d.save(tmp_path / name)))


def _table(slide):
    [shape] = [s for s in slide.shapes if s.has_table]
    return shape


def _cell_size(cell):
    return cell.text_frame.paragraphs[0].runs[0].font.size.pt


def _squeezed_rows(n=6):
    """Rows too wide for one line: the text column must wrap, the number columns must not."""
    text = "a long description of the setting that certainly needs more than one line in its column " * 3
    return [[f"{text}{i}", 123456789.123 + i, "0.81 ± 0.04 (n=4)", f"{37.6 + i:.1f}×", -0.000123 * i]
            for i in range(n)]


def test_number_columns_are_as_wide_as_their_widest_number(tmp_path):
    d = deck.Deck(default_source=SRC)
    d.table_slides(deck.Table("Wide numbers", ["Setting", "Bytes", "Top-1", "Ratio", "Δ"], _squeezed_rows(), SRC))
    prs = _save(d, tmp_path)
    shape = _table(prs.slides[0])
    table = shape.table
    assert _pt(shape.width) == pytest.approx(deck.BODY_W, abs=0.5)  # the table was squeezed to the body width
    assert _pt(table.rows[1].height) > 2 * deck.LINE * _cell_size(table.cell(1, 0))  # the text column wraps
    for j in range(1, 5):
        width = _pt(table.columns[j].width)
        for i in range(len(table.rows)):
            cell = table.cell(i, j)
            text = cell.text_frame.text
            need = _pil_width(text, _cell_size(cell), bold=i == 0) if i else max(
                _pil_width(w, _cell_size(cell), bold=True) for w in text.split())
            assert width >= need + _pt(cell.margin_left) + _pt(cell.margin_right), (i, j, text)


def test_a_long_word_widens_its_column_instead_of_breaking(tmp_path):
    word = "Supercalifragilisticexpialidocious"
    rows = [["filler text " * 60, f"short {word} words"], ["more filler " * 60, "a b c"]]
    d = deck.Deck(default_source=SRC)
    d.table_slides(deck.Table("Long word", ["A", "B"], rows, SRC))
    table = _table(_save(d, tmp_path).slides[0]).table
    cell = table.cell(1, 1)
    size, width = _cell_size(cell), _pt(table.columns[1].width)
    assert width >= _pil_width(word, size) + _pt(cell.margin_left) + _pt(cell.margin_right)
    lines = deck.wrap_text(cell.text_frame.text, size, width - 2 * deck.CELL_MX)
    assert word in [w for line in lines for w in line.split()]  # the word sits whole on a line
    assert all(set(line.split()) <= set(f"short {word} words".split()) for line in lines)


def test_forty_rows_become_several_slides_each_within_the_body(tmp_path):
    rows = [[f"layer{i}", i * 1000.5, "kept " * (1 + 6 * (i % 4)), f"{i}×"] for i in range(40)]
    legend = "kept: the share of weights that survives pruning; ×: fp32 bytes over ours"
    d = deck.Deck(default_source=SRC)
    slides = d.table_slides(deck.Table("Per layer", ["Layer", "Bytes", "Kept", "Ratio"], rows, SRC, legend=legend))
    prs = _save(d, tmp_path)
    n = len(slides)
    assert n >= 2
    assert [s.shapes.title.text for s in prs.slides] == [f"Per layer ({k}/{n})" for k in range(1, n + 1)]
    seen = []
    for slide in prs.slides:
        shape = _table(slide)
        heights = [_pt(r.height) for r in shape.table.rows]
        size = _cell_size(shape.table.cell(1, 0))
        assert size >= deck.TABLE_MIN_PT
        for r, h in zip(list(shape.table.rows)[1:], heights[1:]):  # row height = wrapped lines, margins included
            widths = [_pt(col.width) - 2 * deck.CELL_MX for col in shape.table.columns]
            lines = max(len(deck.wrap_text(c.text_frame.text, size, w)) for c, w in zip(r.cells, widths))
            assert h == pytest.approx(lines * deck.LINE * size + 2 * deck.CELL_MY, abs=0.01)
        bottom = _pt(shape.top) + sum(heights)
        [leg] = [s for s in slide.shapes if s.name == "Legend"]
        [foot] = [s for s in slide.shapes if s.name == "Footer"]
        assert bottom <= _pt(leg.top) and _pt(leg.top + leg.height) <= _pt(foot.top) <= deck.FOOTER_TOP
        assert leg.text_frame.text == legend
        seen += [r.cells[0].text_frame.text for r in list(shape.table.rows)[1:]]
    assert seen == [r[0] for r in rows]  # every row once, in order, nothing shortened


def test_the_font_shrinks_before_the_table_paginates(tmp_path):
    rows = [[f"row {i}", float(i)] for i in range(19)]  # 19 rows: too tall at 18 pt, one slide at a smaller size
    d = deck.Deck(default_source=SRC)
    assert len(d.table_slides(deck.Table("Shrink", ["k", "v"], rows, SRC))) == 1
    size = _cell_size(_table(_save(d, tmp_path).slides[0]).table.cell(1, 0))
    assert deck.TABLE_MIN_PT <= size < deck.TABLE_PT


def test_a_table_too_wide_for_the_slide_is_a_clear_error():
    header = [f"column{j}" for j in range(40)]
    with pytest.raises(NnqError, match="does not fit a slide even at 12 pt"):
        deck.Deck(default_source=SRC).table_slides(deck.Table("Too wide", header, [list(range(40))], SRC))


def test_measures_with_liberation_sans_else_the_wider_dejavu_sans(monkeypatch):
    liberation = deck.measuring_font()
    width = deck.text_width("0.81 ± 0.04 (n=4)", 12)
    real = deck._font_file
    monkeypatch.setattr(deck, "_font_file",
                        lambda family, bold: None if family == "Liberation Sans" else real(family, bold))
    for cache in (deck._faces, deck._width_ref):
        cache.cache_clear()
    try:
        assert Path(deck.measuring_font()).name == "DejaVuSans.ttf"
        if Path(liberation).name.startswith("LiberationSans"):
            assert deck.text_width("0.81 ± 0.04 (n=4)", 12) > width
    finally:
        monkeypatch.undo()
        for cache in (deck._faces, deck._width_ref):
            cache.cache_clear()


def test_titles_shrink_to_one_line_and_too_long_titles_are_errors(tmp_path):
    title = "Memory per builder: sign bits and α apart, everything counted (xnor_size.json)"
    d = deck.Deck(default_source=SRC)
    d.bullets_slide(deck.Bullets(title, ["one"], SRC))
    t = _save(d, tmp_path).slides[0].shapes.title
    size = t.text_frame.paragraphs[0].runs[0].font.size.pt
    assert deck.TITLE_MIN_PT <= size < deck.TITLE_PT
    assert _pil_width(title, size, bold=True) <= _pt(t.width)
    with pytest.raises(NnqError, match="slide title"):
        deck.Deck(default_source=SRC).bullets_slide(deck.Bullets(title * 3, ["one"], SRC))


def test_long_bullets_paginate_and_each_box_holds_its_measured_text(tmp_path):
    items = [f"Bullet {i}: " + "several words that make the bullet long " * 6 for i in range(14)]
    d = deck.Deck(default_source=SRC)
    slides = d.bullets_slide(deck.Bullets("Deviations", items, SRC))
    prs = _save(d, tmp_path)
    assert len(slides) >= 2 and prs.slides[0].shapes.title.text == f"Deviations (1/{len(slides)})"
    texts = []
    for slide in prs.slides:
        [body] = [s for s in slide.shapes if s.name == "Body"]
        paras = body.text_frame.paragraphs
        size = paras[0].runs[0].font.size.pt
        assert deck.BODY_MIN_PT <= size < deck.BODY_PT
        width = _pt(body.width) - deck.BULLET_INDENT * size
        height = sum(len(deck.wrap_text(p.text, size, width)) * deck.LINE * size + p.space_after.pt for p in paras)
        assert height <= _pt(body.height) and _pt(body.top + body.height) <= deck.FOOTER_TOP
        texts += [p.text for p in paras]
    assert texts == items


def test_numbered_items_keep_their_numbers_across_slides_and_restart_under_a_heading(tmp_path):
    items = [f"Deviation {k}: " + "words " * 40 for k in range(1, 12)]
    d = deck.Deck(default_source=SRC)
    d.bullets_slide(deck.Bullets("Deviations", items, numbered=True))
    d.sections_slides("Both", [deck.Bullets("Deviations", ["a", "b"], numbered=True),
                               deck.Bullets("Known gaps", ["x", "y"], numbered=True)])
    prs = _save(d, tmp_path)
    bodies = [next(x for x in s.shapes if x.name == "Body") for s in prs.slides]
    paras = [[p.text for p in body.text_frame.paragraphs] for body in bodies]
    assert len(paras) >= 3
    assert [t.split(".\t")[0] for page in paras[:-1] for t in page] == [str(k) for k in range(1, 12)]
    assert paras[-1] == ["Deviations", "1.\ta", "2.\tb", "Known gaps", "1.\tx", "2.\ty"]


def _deck_kwargs(tmp_path, n_figures=1, deviations=None):
    figs = [deck.Figure(f"Figure {k}", _png(tmp_path / f"f{k}.png", band=0.06), SRC) for k in range(n_figures)]
    return {
        "title": "XNOR-Net", "subtitle": "Rastegari, Ordonez, Redmon, Farhadi — ECCV 2016",
        "idea": deck.Bullets("Idea", ["Binary weights with a scale.", "Binary inputs too."]), "idea_figure": None,
        "formulas": [deck.Formula("Eq. (6)", r"$\alpha^* = \frac{1}{n}\Vert W\Vert_{\ell 1}$",
                                  "papers/xnor/xnor.py: bwn_alpha")],
        "headline": deck.Table("Paper vs ours", ["Claim", "Ours", "Paper"], [["top-1", "0.81 ± 0.04 (n=4)", 0.85]],
                            deck.combine(SRC, deck.paper_source("xnor", "Table 2"))),
        "figures": figs,
        "deviations": deviations or deck.Bullets("Deviations", ["Scale per output channel."]),
        "known_gaps": deck.Bullets("Known gaps", ["No ImageNet run."]),
        "takeaways": deck.Bullets("Takeaways", ["Binary weights cost little accuracy."]),
        "appendix": [deck.Table("Per layer", ["Layer", "Bits"], [["conv1", 32]], SRC)],
    }


def test_paper_deck_order_footers_and_notes(tmp_path):
    path = deck.build_paper_deck(tmp_path / "x.pptx", **_deck_kwargs(tmp_path))
    prs = Presentation(str(path))
    titles = [s.shapes.title.text for s in prs.slides]
    assert titles == ["XNOR-Net", "Idea", "Formulas", "Paper vs ours", "Figure 0", "Deviations and known gaps",
                      "Takeaways", "Appendix", "Per layer"]
    assert not [s for s in prs.slides[0].shapes if s.name == "Footer"]
    for slide in list(prs.slides)[1:]:
        footers = [s for s in slide.shapes if s.name == "Footer"]
        assert len(footers) == 1, slide.shapes.title.text
        notes = slide.notes_slide.notes_text_frame.text
        assert f"Source: {footers[0].text_frame.text}" in notes
    by_title = {s.shapes.title.text: s for s in prs.slides}
    headline_notes = by_title["Paper vs ours"].notes_slide.notes_text_frame.text
    for f in (*SRC.files, "papers/xnor/paper_numbers.py"):
        assert f"- {f}" in headline_notes
    assert "- papers/xnor/xnor.py" in by_title["Formulas"].notes_slide.notes_text_frame.text
    assert [s.text_frame.text for s in by_title["Idea"].shapes if s.name == "Footer"] == [
        "Rastegari, Ordonez, Redmon, Farhadi — ECCV 2016"]  # no source given: the citation


def test_long_deviations_and_gaps_get_their_own_slides(tmp_path):
    long = deck.Bullets("Deviations", [f"Deviation {i}: " + "words " * 25 for i in range(7)])
    path = deck.build_paper_deck(tmp_path / "x.pptx", **_deck_kwargs(tmp_path, deviations=long))
    titles = [s.shapes.title.text for s in Presentation(str(path)).slides]
    assert titles[5:8] == ["Deviations", "Known gaps", "Takeaways"]


def test_more_than_fifteen_main_slides_is_an_error(tmp_path):
    with pytest.raises(NnqError, match="at most 15"):
        deck.build_paper_deck(tmp_path / "x.pptx", **_deck_kwargs(tmp_path, n_figures=10))
    assert not (tmp_path / "x.pptx").exists()
    deck.build_paper_deck(tmp_path / "x.pptx", **_deck_kwargs(tmp_path, n_figures=8))  # 15 slides: fine


def test_the_headline_table_must_fit_one_slide(tmp_path):
    kw = _deck_kwargs(tmp_path)
    kw["headline"] = deck.Table("Paper vs ours", ["Claim", "Ours"], [[f"claim {i}", i] for i in range(60)], SRC)
    with pytest.raises(NnqError, match=r"needs \d slides but may take 1"):
        deck.build_paper_deck(tmp_path / "x.pptx", **kw)


def test_formulas_are_pictures_beside_their_labels_with_the_code_as_text(tmp_path):
    formulas = [deck.Formula(f"Eq. ({i})", rf"$x_{i} = \sum_k w_{{k}} \cdot \mathrm{{sign}}(a_k)$",
                             f"papers/xnor/xnor.py: f{i}", note="a note" if i == 2 else "") for i in range(7)]
    d = deck.Deck(default_source=SRC)
    slides = d.formulas_slides(formulas)
    prs = _save(d, tmp_path)
    assert [s.shapes.title.text for s in prs.slides] == ["Formulas (1/2)", "Formulas (2/2)"]
    pics = [sh for s in prs.slides for sh in s.shapes if sh.shape_type == 13]
    assert [p.name for p in pics] == [f"Formula Eq. ({i})" for i in range(7)]
    texts = [sh.text_frame.text for s in prs.slides for sh in s.shapes if sh.has_text_frame]
    for f in formulas:
        assert f.label in texts and f"code: {f.code}" in texts
    assert "a note" in texts
    for slide in slides:
        for sh in slide.shapes:
            assert _pt(sh.top + sh.height) <= deck.FOOTER_TOP + deck.FOOTER_H
            assert _pt(sh.left + sh.width) <= deck.SLIDE_W
    with pytest.raises(NnqError, match=r"Eq\. \(9\).*not valid matplotlib mathtext"):
        deck.Deck(default_source=SRC).formulas_slides([deck.Formula("Eq. (9)", r"$\frac{1}{$", "a.py: f")])


def test_figure_slide_crops_the_png_footer_and_sits_above_the_slide_footer(tmp_path):
    d = deck.Deck(default_source=SRC)
    d.figure_slide(deck.Figure("Curves", _png(tmp_path / "f.png", (1600, 900), band=0.06), SRC))
    slide = _save(d, tmp_path).slides[0]
    [pic] = [s for s in slide.shapes if s.shape_type == 13]
    [foot] = [s for s in slide.shapes if s.name == "Footer"]
    assert pic.crop_bottom == pytest.approx(0.06, abs=1e-4)
    assert pic.width / pic.height == pytest.approx(1600 / (900 * 0.94), rel=1e-3)
    assert pic.top + pic.height <= foot.top and _pt(pic.top) >= deck.BODY_TOP - 0.01
    assert abs(2 * pic.left + pic.width - deck.SLIDE_W * EMU_PER_PT) <= 2  # centred


def test_an_upright_idea_figure_goes_beside_the_bullets_a_wide_one_after_them(tmp_path):
    idea = deck.Bullets("Idea", ["Binarize the weights.", "Keep a scale per filter."])
    d = deck.Deck(default_source=SRC)
    assert len(d.bullets_slide(idea, figure=deck.Figure("Method", _png(tmp_path / "tall.png", (600, 700)), SRC))) == 1
    assert len(d.bullets_slide(idea, figure=deck.Figure("Method", _png(tmp_path / "wide.png", (1600, 900)), SRC))) == 2
    prs = _save(d, tmp_path)
    [body] = [s for s in prs.slides[0].shapes if s.name == "Body"]
    [pic] = [s for s in prs.slides[0].shapes if s.shape_type == 13]
    assert body.left + body.width <= pic.left
    assert [s.shapes.title.text for s in prs.slides][1:] == ["Idea", "Method"]


def test_same_inputs_give_the_same_bytes(tmp_path):
    a = deck.build_paper_deck(tmp_path / "a.pptx", **_deck_kwargs(tmp_path))
    b = deck.build_paper_deck(tmp_path / "b.pptx", **_deck_kwargs(tmp_path))
    assert a.read_bytes() == b.read_bytes()


def test_mean_sd_and_same_direction_by_hand():
    assert deck.mean_sd([0.76, 0.86, 0.81, 0.81]) == "0.81 ± 0.04 (n=4)"  # sd = sqrt(0.005 / 3) = 0.041
    assert deck.mean_sd([0.85]) == "0.85 (n=1)"
    assert deck.mean_sd([99.15, 99.2], digits=1) == "99.2 ± 0.0 (n=2)"
    assert deck.mean_sd([]) == "—"
    assert deck.same_direction(0.5, 1.2) == "yes"
    assert deck.same_direction(-0.3, -2.0) == "yes"
    assert deck.same_direction(-0.5, 1.2) == "no"
    assert deck.same_direction(0.5, 0.0) == "no"
    assert deck.same_direction(0.05, 1.2, tol=0.1) == "flat"
    assert deck.same_direction(0.0, 1.2) == "flat"


def _run(preset, seed, dataset="MNIST", commit="59c590bdeadbeef", dirty=False, name=None):
    s = Summary(paper="deep_compression", preset=preset, dataset=dataset, seed=seed, commit=commit, dirty=dirty)
    return SimpleNamespace(dir=REPO_ROOT / "papers/deep_compression/results/runs" / (name or f"{preset}_s{seed}"),
                           summary=s)


def test_runs_source_names_presets_seeds_data_and_commits(tmp_path):
    src = deck.runs_source([_run("lenet5_mnist", s) for s in range(4)])
    assert src.footer == "runs: lenet5_mnist s0–3 (MNIST) · commit 59c590b"
    assert src.files == tuple(f"papers/deep_compression/results/runs/lenet5_mnist_s{s}/summary.json" for s in range(4))
    sweep = _run("lenet300_mnist", 0)
    sweep.dir = tmp_path / "sweep_s0"
    (sweep.dir).mkdir()
    (sweep.dir / "points.json").write_text("[]")
    assert deck.runs_source([sweep]).files == (str(sweep.dir / "summary.json"), str(sweep.dir / "points.json"))
    src = deck.runs_source([_run("quick", 0, "digits (sklearn 8x8)", dirty=True)], extra_files=["a/b.json"])
    assert src.footer == f"run: {QUICK_LABEL} s0 (digits (sklearn 8x8)) · commit 59c590b+dirty"
    assert src.files[-1] == "a/b.json"
    mixed = [_run("lenet300_mnist", s, commit="c120127aa") for s in (0, 1, 2, 5)] + [_run("lenet5_mnist", 0)]
    assert deck.runs_source(mixed).footer == \
        "runs: lenet300_mnist s0–2,5, lenet5_mnist s0 (MNIST) · commits c120127, 59c590b"


def test_runs_source_of_many_runs_fits_one_line_and_keeps_the_full_list_for_the_notes():
    runs = [_run(f"preset_number_{k}", s, f"data set {k}", commit=f"{k:07d}abc") for k in range(12) for s in range(3)]
    src = deck.runs_source(runs)
    assert _pil_width(src.footer, deck.FOOTER_PT) * deck.WIDTH_SAFETY <= deck.BODY_W
    assert src.footer == "36 runs of 12 presets on 12 data sets · 12 commits"
    assert "preset_number_11 s0–2 (data set 11)" in src.detail and len(src.files) == 36


def test_file_source_names_the_benchmark_machine_and_commit(tmp_path):
    path = tmp_path / "xnor_gemm.json"
    path.write_text(json.dumps({"benchmark": "xnor_gemm", "machine": {
        "cpu": "AMD EPYC", "cpu_count": 2, "device": "cpu", "commit": "741100bfeed", "dirty": False}}))
    src = deck.file_source(path)
    assert src.footer == "benchmark: xnor_gemm.json · AMD EPYC, 2 cores · commit 741100b"
    assert src.files == (str(path),)
    assert deck.file_source(path, what="measured speed").footer.startswith("measured speed: xnor_gemm.json")
    with pytest.raises(NnqError, match="not found"):
        deck.file_source(tmp_path / "missing.json")


def test_combine_joins_footers_and_files_and_shortens_to_one_line(tmp_path):
    paper = deck.paper_source("xnor", "Table 2")
    assert paper == deck.Source("the paper's figures (Table 2)", ("papers/xnor/paper_numbers.py",))
    both = deck.combine(SRC, paper, SRC)
    assert both.footer == f"{SRC.footer}; the paper's figures (Table 2)"
    assert both.files == (*SRC.files, "papers/xnor/paper_numbers.py")
    runs = [_run(f"preset_{k}", s, f"data {k}", commit=f"{k:07d}ab") for k in range(7) for s in range(2)]
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"machine": {"cpu": "AMD EPYC " * 8, "cpu_count": 2, "commit": "1234567"}}))
    long = deck.combine(deck.runs_source(runs), deck.file_source(path), paper)
    assert _pil_width(long.footer, deck.FOOTER_PT) * deck.WIDTH_SAFETY <= deck.BODY_W
    assert long.footer.endswith("the paper's figures (Table 2)") and "b.json" in long.footer
