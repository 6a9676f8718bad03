"""The study's slide style: figures, tables, README blocks and PPTX decks.

Every paper's ``results.py`` draws with :func:`slide_figure`, saves with :func:`save_figure`
(PNG + PDF with a footer naming the preset, data set and commit), compares against the paper
with :func:`comparison_table`, regenerates its README's results block with
:func:`update_readme_block` and assembles the talk with :func:`build_deck`.

Figures are 16:9 at the size of a slide (13.33 x 7.5 in), so a point in a figure is a point on
the slide. Colours are the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies) and every colour is paired with its own line style and marker, so curves still
read when printed in greyscale. Figures are drawn on an Agg canvas and never registered with
pyplot: no display is needed, and importing this module does not change the backend of the
caller (a notebook keeps its inline plots).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.util import Emu, Inches, Pt

from common.errors import NnqError

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""Okabe & Ito (2008), "Color Universal Design": eight colours safe for colour-blind readers."""

PALETTE: tuple[str, ...] = tuple(
    OKABE_ITO[name]
    for name in (
        "blue", "vermillion", "bluish_green", "orange",
        "reddish_purple", "sky_blue", "black", "yellow",
    )
)
"""The default colour cycle: Okabe-Ito ordered by contrast on white (yellow last)."""

LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), "-", "--")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")

FIGSIZE: tuple[float, float] = (40 / 3, 7.5)
"""A 16:9 slide in inches; at 150 dpi exactly 2000 x 1125 pixels."""

DPI = 150
FONT_SIZE = 16
TITLE_SIZE = 22
GREY = "#555555"

_FOOTER_SIZE = 16
_FOOTER_HEIGHT_IN = 0.45  # band kept free of axes at the bottom of each figure

_SLIDE_W = Emu(12192000)  # 13.333 in: PowerPoint's own 16:9 size
_SLIDE_H = Emu(6858000)  # 7.5 in
_MARGIN = Inches(0.5)
_TITLE_TOP = Inches(0.3)
_TITLE_H = Inches(1.0)
_BODY_TOP = Inches(1.4)
_FOOTER_TOP = Inches(7.0)
_DECK_TITLE_PT = 36
_DECK_BODY_PT = 24
_DECK_TABLE_PT = 18
_DECK_FOOTER_PT = 14
_TABLE_ROWS_PER_SLIDE = 10

_COMPARISON_KEYS = {"setting", "ours", "paper", "ref", "unit", "note"}
_MISSING = "—"


def slide_style() -> dict[str, Any]:
    """Applies the study's slide style to matplotlib's global rcParams.

    The style is global because titles, labels, ticks and legends read rcParams when they are
    created, after :func:`slide_figure` has returned.

    Returns:
        The rcParams that were set.
    """
    style = {
        "figure.figsize": FIGSIZE,
        "figure.dpi": 100,
        "savefig.dpi": DPI,
        "savefig.bbox": None,  # "tight" would change the 16:9 size
        "figure.facecolor": "white",
        "savefig.facecolor": "white",
        "font.family": "sans-serif",
        "font.size": FONT_SIZE,
        "axes.titlesize": 20,
        "axes.titleweight": "bold",
        "axes.labelsize": 18,
        "figure.titlesize": TITLE_SIZE,
        "figure.titleweight": "bold",
        "xtick.labelsize": FONT_SIZE,
        "ytick.labelsize": FONT_SIZE,
        "legend.fontsize": FONT_SIZE,
        "legend.title_fontsize": FONT_SIZE,
        "legend.frameon": False,
        "axes.prop_cycle": (
            cycler(color=PALETTE) + cycler(linestyle=LINESTYLES) + cycler(marker=MARKERS)
        ),
        "lines.linewidth": 2.5,
        "lines.markersize": 7,
        "axes.grid": True,
        "grid.color": "#b0b0b0",
        "grid.alpha": 0.4,
        "grid.linewidth": 0.8,
        "axes.axisbelow": True,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "image.cmap": "viridis",
        "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable
    }
    mpl.rcParams.update(style)
    return style


def slide_figure(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Figure, Any]:
    """Creates a 16:9 slide figure in the study's style.

    Args:
        nrows: Rows of the subplot grid.
        ncols: Columns of the subplot grid.
        **kw: Passed to ``Figure.subplots`` (``sharex``, ``sharey``, ``squeeze``,
            ``subplot_kw``, ``gridspec_kw``, ...).

    Returns:
        ``(fig, axes)`` as ``plt.subplots`` returns them: one ``Axes`` for a 1x1 grid,
        else an array of them. ``fig`` uses the constrained layout on an Agg canvas.
    """
    slide_style()
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def footer_text(preset: str, dataset: str, commit: str | None, *, dirty: bool = False) -> str:
    """The provenance line printed under every figure and slide.

    Numbers of the ``quick`` preset are labelled as such in words, so a quick run is never
    mistaken for a paper-scale result.

    Args:
        preset: The preset name, e.g. ``"quick"`` or ``"paper"``.
        dataset: The data set's label, e.g. ``"digits (sklearn 8x8)"``.
        commit: The git commit of the runs; shortened to 7 characters; ``None`` if unknown.
        dirty: Whether the runs came from a tree with uncommitted changes.

    Returns:
        e.g. ``"preset: paper · data: MNIST · commit abc1234"``.
    """
    if preset == "quick":
        head = "quick preset (CPU, minutes; not paper scale)"
    else:
        head = f"preset: {preset}"
    rev = commit[:7] if commit else "unknown"
    if dirty:
        rev += "+dirty"
    return f"{head} · data: {dataset} · commit {rev}"


def summary_footer(summary: Mapping[str, Any]) -> str:
    """:func:`footer_text` of a run's summary.json (its preset, data set and commit)."""
    return footer_text(summary["preset"], summary["dataset"], summary.get("commit"), dirty=bool(summary.get("dirty")))


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str, *, footer: str) -> list[Path]:
    """Draws the footer, writes ``name.png`` and ``name.pdf`` and closes the figure.

    The footer sits in a band at the bottom that the constrained layout keeps free of axes.
    The PDF carries no creation date, so the same figure gives the same bytes.

    Args:
        fig: A figure, normally from :func:`slide_figure`.
        out_dir: Folder to write into; created if missing.
        name: File name without suffix.
        footer: Provenance line, normally from :func:`footer_text`; must not be empty.

    Returns:
        ``[png_path, pdf_path]``.

    Raises:
        NnqError: If ``footer`` is empty.
    """
    if not footer or not footer.strip():
        raise NnqError(f"figure {name!r} has no footer; pass footer=footer_text(preset, dataset, commit)")
    band = _FOOTER_HEIGHT_IN / fig.get_figheight()
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0, band, 1, 1 - band))
    fig.text(0.01, band / 2, footer, ha="left", va="center", fontsize=_FOOTER_SIZE, color=GREY)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=max(DPI, mpl.rcParams["savefig.dpi"]))
    fig.savefig(pdf, metadata={"CreationDate": None})
    if fig.canvas.manager is not None:  # a pyplot figure: unregister it so it can be freed
        import matplotlib.pyplot as plt

        plt.close(fig)
    return [png, pdf]


def format_cell(value: Any) -> str:
    """Formats one table cell: floats with two decimals, ``None`` as an em dash.

    Args:
        value: Any value.

    Returns:
        The cell text.
    """
    if value is None:
        return _MISSING
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else str(value)
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Renders a GitHub-flavoured Markdown table.

    Args:
        header: Column names.
        rows: One sequence of cells per row, each as long as ``header``; cells are formatted
            with :func:`format_cell`.

    Returns:
        The table, one line per row, ending with a newline.

    Raises:
        NnqError: If a row's length differs from the header's.
    """
    _check_widths(header, rows)

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(format_cell(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), "|" + "|".join("---" for _ in header) + "|"]
    lines += [line(r) for r in rows]
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Writes a CSV file (UTF-8, ``None`` as an empty cell), creating its folder.

    Args:
        path: File to write.
        header: Column names.
        rows: One sequence of cells per row, each as long as ``header``.

    Returns:
        The path written.

    Raises:
        NnqError: If a row's length differs from the header's.
    """
    _check_widths(header, rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if c is None else c for c in r] for r in rows])
    return path


def comparison_table(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, name: str) -> str:
    """Writes the "ours against the paper" table as ``name.md`` and ``name.csv``.

    Columns are ``Setting | Ours | Paper (ref) | Δ`` (plus ``Note`` when any row has one).
    Δ is ours minus paper, signed, when both are numbers; otherwise an em dash. Both files hold
    the same cell text, so the CSV is what the slide shows.

    Args:
        rows: One mapping per setting with keys ``setting``, ``ours`` (number or ``None``),
            ``paper`` (number or ``None``), ``ref`` (where the paper reports it, e.g.
            ``"Table 1"``) and optionally ``unit`` (appended to the setting) and ``note``.
        out_dir: Folder to write into; created if missing.
        name: File name without suffix.

    Returns:
        The Markdown table.

    Raises:
        NnqError: If a row lacks ``setting`` or has an unknown key.
    """
    header = ["Setting", "Ours", "Paper (ref)", "Δ"]
    with_note = any(r.get("note") for r in rows)
    if with_note:
        header.append("Note")
    table = []
    for r in rows:
        unknown = set(r) - _COMPARISON_KEYS
        if "setting" not in r or unknown:
            raise NnqError(
                f"comparison row {dict(r)!r} is malformed; give 'setting' and only keys {sorted(_COMPARISON_KEYS)}"
            )
        ours, paper, ref = r.get("ours"), r.get("paper"), r.get("ref")
        setting = f"{r['setting']} ({r['unit']})" if r.get("unit") else str(r["setting"])
        paper_cell = format_cell(paper)
        if paper is not None and ref:
            paper_cell += f" ({ref})"
        cells = [setting, format_cell(ours), paper_cell, _delta(ours, paper)]
        if with_note:
            cells.append(r.get("note") or "")
        table.append(cells)
    md = markdown_table(header, table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(md, encoding="utf-8")
    write_csv(out / f"{name}.csv", header, table)
    return md


def update_readme_block(readme_path: str | os.PathLike, block_name: str, markdown: str) -> bool:
    """Replaces the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``.

    The markers stay; everything outside them is left byte for byte. The file is replaced
    atomically.

    Args:
        readme_path: The README to edit.
        block_name: The marker name, e.g. ``"results"``.
        markdown: The new content of the block.

    Returns:
        Whether the file changed.

    Raises:
        NnqError: If the file is missing or the markers are missing, repeated or out of order.
    """
    path = Path(readme_path)
    if not path.is_file():
        raise NnqError(f"README {path} not found; create it with the paper's README sections")
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN {block_name} -->", f"<!-- END {block_name} -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise NnqError(
            f"{path} needs exactly one '{begin}' followed by one '{end}'; add them around the {block_name} section"
        )
    head, rest = text.split(begin)
    tail = rest.split(end)[1]
    new = f"{head}{begin}\n{markdown.strip(chr(10))}\n{end}{tail}"
    if new == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)
    return True


def build_deck(
    path: str | os.PathLike,
    *,
    title: str,
    subtitle: str,
    idea: Sequence[str],
    equation_map: Mapping[str, str] | Sequence[tuple[str, str]],
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
    figures: Sequence[tuple[str, str | os.PathLike]],
    footer: str | None = None,
) -> Path:
    """Builds a paper's 16:9 PPTX deck.

    Slides: title; "Idea" (one bullet per item); "Equation map" (Eq. -> code location); one
    slide per table (long tables continue on further slides); one slide per figure, the
    picture scaled to fit below the title.

    Args:
        path: The ``.pptx`` file to write; its folder is created if missing.
        title: The paper's title.
        subtitle: Authors, venue and year (and the presenter, if wanted).
        idea: The idea in a few sentences, one bullet each.
        equation_map: ``{"Eq. (4)": "papers/bnn/binarize.py: sign_ste"}`` or a sequence of pairs.
        tables: ``(slide_title, header, rows)`` triples; cells formatted with :func:`format_cell`.
        figures: ``(slide_title, png_path)`` pairs.
        footer: Provenance line shown at the bottom of every slide but the title slide.

    Returns:
        The path written.

    Raises:
        NnqError: If a figure file is missing or is not a PNG/JPEG.
    """
    for _, fig_path in figures:
        p = Path(fig_path)
        if not p.is_file() or p.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            raise NnqError(f"deck figure {p} is missing or not a PNG/JPEG; regenerate it with save_figure")
    prs = Presentation()
    prs.slide_width, prs.slide_height = _SLIDE_W, _SLIDE_H
    prs.core_properties.title = title

    slide = prs.slides.add_slide(prs.slide_layouts[0])
    slide.shapes.title.text = title
    slide.placeholders[1].text = subtitle
    _place(slide.shapes.title, _MARGIN, Inches(2.0), _SLIDE_W - 2 * _MARGIN, Inches(2.0), 44, bold=True)
    _place(slide.placeholders[1], _MARGIN, Inches(4.2), _SLIDE_W - 2 * _MARGIN, Inches(1.5), 28)

    slide = _titled_slide(prs, "Idea", footer)
    box = slide.shapes.add_textbox(_MARGIN, _BODY_TOP, _SLIDE_W - 2 * _MARGIN, _FOOTER_TOP - _BODY_TOP)
    frame = box.text_frame
    frame.word_wrap = True
    for i, item in enumerate(idea):
        para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        para.text = f"• {item}"
        para.font.size = Pt(_DECK_BODY_PT)
        para.space_after = Pt(12)

    pairs = list(equation_map.items()) if isinstance(equation_map, Mapping) else list(equation_map)
    _table_slides(prs, "Equation map", ["Eq.", "Code"], pairs, footer, weights=[1, 3])
    for slide_title, header, rows in tables:
        _table_slides(prs, slide_title, header, rows, footer)

    for slide_title, fig_path in figures:
        slide = _titled_slide(prs, slide_title, footer)
        max_w, max_h = _SLIDE_W - 2 * _MARGIN, _FOOTER_TOP - _BODY_TOP
        pic = slide.shapes.add_picture(str(fig_path), _MARGIN, _BODY_TOP, width=max_w)
        if pic.height > max_h:
            pic.width, pic.height = int(pic.width * max_h / pic.height), max_h
        pic.left = (_SLIDE_W - pic.width) // 2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prs.save(path)
    return path


def _delta(ours: Any, paper: Any) -> str:
    """Signed ours - paper when both are finite numbers, else an em dash."""

    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not (numeric(ours) and numeric(paper)):
        return _MISSING
    d = ours - paper
    return f"{d:+d}" if isinstance(d, int) else f"{d:+.2f}"


def _check_widths(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    for r in rows:
        if len(r) != len(header):
            raise NnqError(f"table row {list(r)!r} has {len(r)} cells but the header {list(header)!r} has {len(header)}")


def _place(shape: Any, left: int, top: int, width: int, height: int, size: int, *, bold: bool = False) -> None:
    """Moves a placeholder onto the 16:9 slide and sets its font size."""
    shape.left, shape.top, shape.width, shape.height = left, top, width, height
    for para in shape.text_frame.paragraphs:
        para.font.size = Pt(size)
        para.font.bold = bold


def _titled_slide(prs: Any, title: str, footer: str | None) -> Any:
    """Adds a "Title Only" slide with the title repositioned for 16:9 and the optional footer."""
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    slide.shapes.title.text = title
    _place(slide.shapes.title, _MARGIN, _TITLE_TOP, _SLIDE_W - 2 * _MARGIN, _TITLE_H, _DECK_TITLE_PT, bold=True)
    if footer:
        box = slide.shapes.add_textbox(_MARGIN, _FOOTER_TOP, _SLIDE_W - 2 * _MARGIN, Inches(0.4))
        para = box.text_frame.paragraphs[0]
        para.text = footer
        para.font.size = Pt(_DECK_FOOTER_PT)
        para.font.color.rgb = RGBColor.from_string(GREY[1:])
    return slide


def _table_slides(
    prs: Any,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    footer: str | None,
    weights: Sequence[float] | None = None,
) -> None:
    """Adds a table on as many slides as it needs, columns as wide as their longest cell."""
    _check_widths(header, rows)
    cells = [[format_cell(c) for c in r] for r in rows]
    if weights is None:
        weights = [max(4, *(len(r[j]) for r in [list(header), *cells])) for j in range(len(header))]
    chunks = [cells[i : i + _TABLE_ROWS_PER_SLIDE] for i in range(0, len(cells), _TABLE_ROWS_PER_SLIDE)] or [[]]
    width = _SLIDE_W - 2 * _MARGIN
    for k, chunk in enumerate(chunks):
        name = title if len(chunks) == 1 else f"{title} ({k + 1}/{len(chunks)})"
        slide = _titled_slide(prs, name, footer)
        n = len(chunk) + 1
        shape = slide.shapes.add_table(n, len(header), _MARGIN, _BODY_TOP, width, Inches(0.5) * n)
        table = shape.table
        for j, w in enumerate(weights):
            table.columns[j].width = int(width * w / sum(weights))
        for i, row in enumerate([list(header), *chunk]):
            for j, text in enumerate(row):
                cell = table.cell(i, j)
                cell.text = text
                for para in cell.text_frame.paragraphs:
                    para.font.size = Pt(_DECK_TABLE_PT)
                    para.font.bold = i == 0
