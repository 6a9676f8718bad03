"""The study's slide style: figures, tables and README blocks (the decks are in :mod:`common.deck`).

Every paper's ``results.py`` draws with :func:`slide_figure`, saves with :func:`save_figure`
(PNG + PDF with a footer naming the preset, data set and commit), compares against the paper
with :func:`comparison_table`, regenerates its README's results block with
:func:`update_readme_block` and assembles the talk with :func:`common.deck.build_paper_deck`.

One unit convention across the study: memory in MiB (:func:`fmt_mib`), ratios with a ``×``
(:func:`fmt_ratio`, :func:`ratio_axis`), percentages with ``%`` (:func:`fmt_pct`). The chart helpers
show the effect rather than the axis: :func:`bar_labels` writes each bar's value, :func:`reference_line`
draws the paper's number as a labelled dashed line, :func:`speedup_bars` draws speed-ups from a 1× line,
and :func:`focus_ylim` zooms the y-range onto the values, annotating an outlier instead of flattening the plot.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter

from common import deck as _deck
from common.deck import FOOTER_BAND_KEY, GREY, MISSING, QUICK_LABEL, format_cell
from common.errors import NnqError
from common.paths import atomic_write_text

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

PAPER_COLOR = OKABE_ITO["reddish_purple"]
"""Colour of the paper's reported numbers in every chart (:func:`reference_line`)."""
GAIN_COLOR = OKABE_ITO["blue"]
LOSS_COLOR = OKABE_ITO["vermillion"]
MIB = 1024**2

_FOOTER_SIZE = 16
_FOOTER_HEIGHT_IN = 0.45  # band kept free of axes at the bottom of each figure

_COMPARISON_KEYS = {"setting", "ours", "paper", "ref", "unit", "note"}


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
        head = QUICK_LABEL
    else:
        head = f"preset: {preset}"
    rev = commit[:7] if commit else "unknown"
    if dirty:
        rev += "+dirty"
    return f"{head} · data: {dataset} · commit {rev}"


def summary_footer(summary: Any) -> str:
    """:func:`footer_text` of a run's summary (its preset, data set and commit).

    Args:
        summary: A :class:`common.summary.Summary` (or anything with its attributes), or a summary.json dict.
    """
    if isinstance(summary, Mapping):
        get = summary.get
    else:
        def get(key: str) -> Any:
            return getattr(summary, key, None)
    return footer_text(get("preset") or "unknown", get("dataset") or MISSING, get("commit"), dirty=bool(get("dirty")))


def save_figure(fig: Figure, out_dir: str | os.PathLike, name: str, *, footer: str) -> list[Path]:
    """Draws the footer, writes ``name.png`` and ``name.pdf`` and closes the figure.

    The footer sits in a band at the bottom that the constrained layout keeps free of axes.
    The PDF carries no creation date, so the same figure gives the same bytes.

    Args:
        fig: A figure, normally from :func:`slide_figure`.
        out_dir: Folder to write into; created if missing.
        name: File name without suffix.
        footer: Provenance line, normally from :func:`footer_text`; must not be empty.

    The PNG records the footer band's height (:data:`FOOTER_BAND_KEY`): the PNG keeps its footer when it
    travels alone, and a deck slide (:mod:`common.deck`) crops the band and prints the slide's own footer.

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
    text = fig.text(0.01, band / 2, footer, ha="left", va="center", fontsize=_FOOTER_SIZE, color=GREY)
    used = text.get_window_extent().width / (fig.get_figwidth() * fig.dpi)
    if used > 0.98:  # a long provenance line shrinks to the figure's width rather than run off its edge
        text.set_fontsize(_FOOTER_SIZE * 0.98 / used)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=max(DPI, mpl.rcParams["savefig.dpi"]), metadata={FOOTER_BAND_KEY: f"{band:.6f}"})
    fig.savefig(pdf, metadata={"CreationDate": None})
    if fig.canvas.manager is not None:  # a pyplot figure: unregister it so it can be freed
        import matplotlib.pyplot as plt

        plt.close(fig)
    return [png, pdf]


def fmt_mib(n_bytes: float) -> str:
    """Bytes as MiB (2**20 bytes): two decimals from 1 MiB up, two significant digits below.

    >>> fmt_mib(1_724_920), fmt_mib(45_894), fmt_mib(0)
    ('1.65 MiB', '0.044 MiB', '0 MiB')
    """
    v = n_bytes / MIB
    if v == 0:
        return "0 MiB"
    digits = 2 if abs(v) >= 1 else 1 - math.floor(math.log10(abs(v)))
    return f"{v:.{digits}f} MiB"


def fmt_ratio(x: float) -> str:
    """A ratio with its ``×``: ``1.15×``, ``37.6×``, ``120×`` (three significant digits up to 999)."""
    if not math.isfinite(x):
        return f"{x}×"
    digits = 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0
    return f"{x:.{digits}f}×"


def fmt_pct(x: float, digits: int = 2, *, fraction: bool = False) -> str:
    """A percentage: ``fmt_pct(99.15) == "99.15%"``; with ``fraction=True`` the value is a fraction (0.9915)."""
    return f"{100 * x if fraction else x:.{digits}f}%"


def ratio_axis(ax: Any, axis: str = "y") -> None:
    """Tick labels of a ratio axis with a ``×`` (``1×``, ``10×``)."""
    fmt = FuncFormatter(lambda v, _: f"{v:g}×")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def bar_labels(ax: Any, bars: Any, fmt: str | Any = "{:.2f}", *, values: Sequence[float] | None = None,
               fontsize: float = FONT_SIZE) -> list[Any]:
    """Writes each bar's value at its end: above a bar that grows upward, below one drawn downward.

    The y-range grows so that the labels stay inside the axes.

    Args:
        ax: The axes of the bars.
        bars: The ``BarContainer`` (or a sequence of rectangles) that ``ax.bar`` returned.
        fmt: A format string (``"{:.1f}"``) or a function of the value (e.g. :func:`fmt_ratio`).
        values: The numbers to print (default: each bar's height), e.g. the ratios of bars drawn from 1×.
        fontsize: Label size in points (the slide's body size by default).

    Returns:
        The annotations.
    """
    bars = list(bars)
    values = [b.get_height() for b in bars] if values is None else list(values)
    if len(values) != len(bars):
        raise NnqError(f"bar_labels got {len(values)} values for {len(bars)} bars; give one value per bar")
    text = fmt if callable(fmt) else fmt.format
    out = []
    for bar, v in zip(bars, values):
        down = bar.get_height() < 0
        end = bar.get_y() + bar.get_height()  # the bar's far end, seen from its base
        out.append(ax.annotate(text(v), (bar.get_x() + bar.get_width() / 2, end), xytext=(0, -5 if down else 5),
                               textcoords="offset points", ha="center", va="top" if down else "bottom",
                               fontsize=fontsize))
    _headroom(ax, bars)
    return out


def reference_line(ax: Any, y: float, label: str, *, ref: str | None = None, color: str = PAPER_COLOR,
                   loc: str = "right") -> Any:
    """The paper's number as a labelled dashed horizontal line, in the study's paper colour.

    Call it after the y-range is set (e.g. by :func:`focus_ylim`): a number outside the range is shown as an
    arrow at the nearer edge with its value, so the paper's figure never flattens the plot.

    Args:
        ax: The axes.
        y: The paper's number, in the axis' unit.
        label: What it is, e.g. ``"paper, LeNet-5"``.
        ref: Where the paper reports it (``"Table 1"``), appended in parentheses.
        color: Line and label colour (:data:`PAPER_COLOR` by default).
        loc: ``"right"`` or ``"left"``: the end of the line that carries the label (pick the emptier side).

    Returns:
        The line, or the edge annotation when ``y`` is outside the y-range.
    """
    if loc not in ("left", "right"):
        raise NnqError(f"reference_line loc={loc!r}; use 'left' or 'right'")
    text = f"{label} ({ref})" if ref else label
    x, dx = (1, -6) if loc == "right" else (0, 6)
    lo, hi = sorted(ax.get_ylim())
    if lo <= y <= hi:
        line = ax.axhline(y, color=color, linestyle="--", linewidth=2, zorder=3)
        ax.annotate(text, xy=(x, y), xycoords=("axes fraction", "data"), xytext=(dx, 4), textcoords="offset points",
                    ha=loc, va="bottom", color=color, fontsize=FONT_SIZE, zorder=4,
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5})
        return line
    top = y > hi
    return ax.annotate(f"{text}: {y:g}", xy=(x, 1 if top else 0), xycoords="axes fraction",
                       xytext=(dx, -34 if top else 34), textcoords="offset points", ha=loc,
                       va="top" if top else "bottom", color=color, fontsize=FONT_SIZE,
                       arrowprops={"arrowstyle": "->", "color": color, "linewidth": 2})


def speedup_bars(ax: Any, labels: Sequence[str], ratios: Sequence[float], *, threshold: float = 1.0) -> Any:
    """A speed-up chart: bars grow from the 1× line, up for a gain, down for a slow-down, each with its value.

    The y-axis is logarithmic where the ratios span more than 10×.

    Args:
        ax: The axes.
        labels: One label per bar.
        ratios: Speed-ups (baseline time over ours), all positive.
        threshold: Where the bars start and the reference line is drawn (1× = no speed-up).

    Returns:
        The ``BarContainer``.

    Raises:
        NnqError: If a ratio is not a positive finite number, or labels and ratios differ in length.
    """
    r = [float(x) for x in ratios]
    if len(r) != len(labels) or not r or not all(math.isfinite(x) and x > 0 for x in r):
        raise NnqError(f"speedup_bars needs one positive ratio per label, got {len(labels)} labels and {ratios!r}")
    log = max(r + [threshold]) / min(r + [threshold]) > 10
    if log:
        ax.set_yscale("log")
    x = list(range(len(r)))
    colours = [GAIN_COLOR if v >= threshold else LOSS_COLOR for v in r]
    bars = ax.bar(x, [v - threshold for v in r], bottom=threshold, color=colours, width=0.7, zorder=2)
    ax.axhline(threshold, color="black", linewidth=1.5, zorder=3)
    lo, hi = min(r + [threshold]), max(r + [threshold])
    if log:
        ax.set_ylim(lo / 1.6, hi * 1.6)
    else:
        span = hi - lo or threshold
        ax.set_ylim(max(0.0, lo - 0.12 * span), hi + 0.12 * span)
    long = len(r) > 6 or max(len(str(s)) for s in labels) > 10
    ax.set_xticks(x, [str(s) for s in labels], rotation=30 if long else 0, ha="right" if long else "center")
    ratio_axis(ax)
    if not ax.get_ylabel():
        ax.set_ylabel("speed-up (×)")
    ax.grid(False, axis="x")
    bar_labels(ax, bars, fmt_ratio, values=r)
    return bars


def focus_ylim(ax: Any, values: Sequence[float], *, pad: float = 0.15, outlier_z: float = 3.0,
               xs: Sequence[float] | None = None) -> tuple[float, float]:
    """Sets a y-range that shows the differences between ``values`` rather than their distance from zero.

    An outlier (more than ``outlier_z`` robust standard deviations from the median: 1.4826 × the median
    absolute deviation; needs at least 4 values) is left outside the range and drawn as an arrow at the
    nearer edge with its value.

    Args:
        ax: The axes.
        values: The plotted values (lines or bar tops).
        pad: Margin above and below the values, as a fraction of their span.
        outlier_z: Robust z-score above which a value counts as an outlier.
        xs: The x position of each value (for the outlier arrows); found from the axes' lines and bars if None.

    Returns:
        The y-range set.
    """
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        raise NnqError("focus_ylim needs at least one finite value")
    outliers: list[int] = []
    if len(v) >= 4:
        med = _median(v)
        scale = 1.4826 * _median([abs(x - med) for x in v])
        if scale == 0:
            mean = sum(v) / len(v)
            scale = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))
        if scale > 0:
            outliers = [i for i, x in enumerate(v) if abs(x - med) > outlier_z * scale]
    inl = [x for i, x in enumerate(v) if i not in outliers]
    lo, hi = min(inl), max(inl)
    span = hi - lo or max(abs(hi) * 0.05, 1e-9)
    lo, hi = lo - pad * span, hi + pad * span
    ax.set_ylim(lo, hi)
    for i in outliers:
        x = xs[i] if xs is not None else _find_x(ax, v[i])
        top = v[i] > hi
        ax.annotate(f"{v[i]:.4g}", xy=(x, 1 if top else 0), xycoords=("data", "axes fraction"),
                    xytext=(0, -34 if top else 34), textcoords="offset points", ha="center",
                    va="top" if top else "bottom", fontsize=FONT_SIZE,
                    arrowprops={"arrowstyle": "->", "linewidth": 2})
    return lo, hi


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


def readme_block(readme_path: str | os.PathLike, block_name: str) -> str:
    """The text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` of a README (stripped of blank lines
    at its ends), as :func:`update_readme_block` last wrote it."""
    text = Path(readme_path).read_text(encoding="utf-8")
    begin, end = f"<!-- BEGIN {block_name} -->", f"<!-- END {block_name} -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise NnqError(f"{readme_path} needs exactly one '{begin}' followed by one '{end}'")
    return text.split(begin)[1].split(end)[0].strip(chr(10))


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
    atomic_write_text(path, new)
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
    """Deprecated: the first deck layout, kept until every paper builds its deck with
    :func:`common.deck.build_paper_deck`.

    Slides: title; "Idea"; "Equation map" (Eq. -> code location); each table (paginated by measured height);
    one slide per figure. Built with :class:`common.deck.Deck`, so its text fits; every slide carries
    ``footer`` (else the subtitle) as its one footer line.

    Args:
        path: The ``.pptx`` file to write; its folder is created if missing.
        title: The paper's title.
        subtitle: Authors, venue and year.
        idea: The idea in a few sentences, one bullet each.
        equation_map: ``{"Eq. (4)": "papers/bnn/binarize.py: sign_ste"}`` or a sequence of pairs.
        tables: ``(slide_title, header, rows)`` triples; cells formatted with :func:`format_cell`.
        figures: ``(slide_title, png_path)`` pairs.
        footer: Provenance line shown at the bottom of every slide but the title slide.

    Returns:
        The path written.

    Raises:
        NnqError: If a figure file is missing or is not a PNG/JPEG, or a table cannot fit a slide.
    """
    for _, fig_path in figures:
        p = Path(fig_path)
        if not p.is_file() or p.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
            raise NnqError(f"deck figure {p} is missing or not a PNG/JPEG; regenerate it with save_figure")
    source = _deck.Source(footer or subtitle)
    deck = _deck.Deck(title=title, default_source=source)
    deck.title_slide(title, subtitle)
    deck.bullets_slide(_deck.Bullets("Idea", list(idea), source))
    pairs = list(equation_map.items()) if isinstance(equation_map, Mapping) else list(equation_map)
    if pairs:
        deck.table_slides(_deck.Table("Equation map", ["Eq.", "Code"], pairs, source))
    for slide_title, header, rows in tables:
        deck.table_slides(_deck.Table(slide_title, header, rows, source))
    for slide_title, fig_path in figures:
        deck.figure_slide(_deck.Figure(slide_title, fig_path, source))
    return deck.save(path)


def _delta(ours: Any, paper: Any) -> str:
    """Signed ours - paper when both are finite numbers, else an em dash."""

    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not (numeric(ours) and numeric(paper)):
        return MISSING
    d = ours - paper
    return f"{d:+d}" if isinstance(d, int) else f"{d:+.2f}"


def _check_widths(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    for r in rows:
        if len(r) != len(header):
            raise NnqError(f"table row {list(r)!r} has {len(r)} cells but the header {list(header)!r} has {len(header)}")


def _median(v: Sequence[float]) -> float:
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _headroom(ax: Any, bars: Sequence[Any], frac: float = 0.12) -> None:
    """Widens the y-range beyond the bars' far ends (up for upward bars, down for downward ones) by ``frac`` of
    the bars' span, so that labels written there stay inside the axes."""
    ups = [b.get_y() + b.get_height() for b in bars if b.get_height() >= 0]
    downs = [b.get_y() + b.get_height() for b in bars if b.get_height() < 0]
    ends = [b.get_y() for b in bars] + ups + downs
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        k = (max(ends) / min(ends)) ** frac if min(ends) > 0 and max(ends) > min(ends) else 1.2
        new_lo, new_hi = (min(lo, min(downs) / k) if downs else lo), (max(hi, max(ups) * k) if ups else hi)
    else:
        span = (max(ends) - min(ends)) or abs(max(ends)) or 1.0
        new_lo = min(lo, min(downs) - frac * span) if downs else lo
        new_hi = max(hi, max(ups) + frac * span) if ups else hi
    ax.set_ylim(new_lo, new_hi)


def _find_x(ax: Any, y: float) -> float:
    """The x of the plotted point (line vertex or bar top) whose y is ``y``; the middle of the x-range if none."""
    for line in ax.get_lines():
        for xv, yv in zip(line.get_xdata(), line.get_ydata()):
            try:
                if math.isclose(float(yv), y, rel_tol=1e-9, abs_tol=1e-12):
                    return float(xv)
            except (TypeError, ValueError):
                continue
    for patch in ax.patches:
        if hasattr(patch, "get_height") and math.isclose(patch.get_y() + patch.get_height(), y, rel_tol=1e-9):
            return patch.get_x() + patch.get_width() / 2
    lo, hi = ax.get_xlim()
    return (lo + hi) / 2
