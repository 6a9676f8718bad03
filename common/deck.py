"""Slide decks a presenter presents from as they are: PPTX slides whose text is measured to fit.

Every paper's deck has one structure (:func:`build_paper_deck`): title -> idea -> formulas (rendered)
-> one "paper vs ours" table -> the key figures -> deviations -> known gaps -> takeaways -> appendix.
The study-wide deck uses the same slides through :class:`Deck`.

What a slide promises:

* Text is measured with the metrics of the font that renders it (Liberation Sans, metric-compatible
  with Arial, the font every run names; DejaVu Sans, which is wider, where Liberation Sans is
  missing), so nothing wraps where it was not measured to wrap: a title stays on one line (its size
  shrinks to a floor, else an error), a number never breaks inside its column, a text cell wraps at
  spaces only, and a table or a list of bullets too tall for one slide is continued on the next
  ("Title (1/2)") after its font has shrunk to a floor.
* Exactly one footer line (the slide's :class:`Source`: which runs, benchmark or paper table its numbers
  come from), and speaker notes naming every file behind those numbers.
* Formulas are pictures rendered by matplotlib's mathtext, beside their equation number and the code
  that implements them.

:mod:`common.report` (figures, Markdown tables) builds on this module and re-exports what the two share:
the cell format, the wording of the ``quick`` preset, the footers' grey and the PNG footer band.

The same inputs give the same file bytes (fixed document dates and zip timestamps), so regenerated
decks do not churn in git. ``../shared/tools/deckcheck.py`` renders a deck with LibreOffice and lists
every word that did not come out whole; ``tests/test_decks_render.py`` runs it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import io
import json
import math
import re
import shutil
import subprocess
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageFont
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.text import MSO_ANCHOR, MSO_AUTO_SIZE, PP_ALIGN
from pptx.oxml.ns import qn
from pptx.util import Pt

from common.errors import NnqError
from common.paths import REPO_ROOT, atomic_write_bytes

__all__ = [
    "FOOTER_BAND_KEY",
    "GREY",
    "MAX_MAIN_SLIDES",
    "MISSING",
    "QUICK_LABEL",
    "Bullets",
    "Deck",
    "Figure",
    "Formula",
    "Source",
    "Table",
    "TableLayout",
    "build_paper_deck",
    "combine",
    "file_source",
    "format_cell",
    "layout_table",
    "mean_sd",
    "measuring_font",
    "paper_source",
    "render_formula",
    "runs_source",
    "same_direction",
    "text_width",
    "wrap_text",
]

FONT = "Arial"
"""The typeface every run names. PowerPoint has Arial; LibreOffice renders it with Liberation Sans, which has
Arial's metrics, and that is the font :func:`text_width` measures with."""

GREY = "#555555"
"""Footers and secondary text, on slides and in figures."""
MISSING = "—"
"""A missing value in a table."""
QUICK_LABEL = "quick preset (CPU, minutes; not paper scale)"
"""How footers name the ``quick`` preset, so a quick run is never taken for a paper-scale result."""
FOOTER_BAND_KEY = "nnq-footer-band"
"""PNG text chunk written by :func:`common.report.save_figure`: the fraction of the image height that the
figure's footer band takes at the bottom (a slide crops it away and prints its own footer instead)."""

# Slide geometry in points (a 16:9 slide is 960 x 540 pt = 13.33 x 7.5 in).
SLIDE_W, SLIDE_H = 960.0, 540.0
MARGIN = 36.0
BODY_W = SLIDE_W - 2 * MARGIN
TITLE_TOP, TITLE_H = 16.0, 56.0
BODY_TOP = 84.0
BODY_BOTTOM = 498.0
FOOTER_TOP, FOOTER_H = 508.0, 22.0

TITLE_PT, TITLE_MIN_PT = 32.0, 20.0
BODY_PT, BODY_MIN_PT = 24.0, 16.0
TABLE_PT, TABLE_MIN_PT = 18.0, 12.0
FOOTER_PT, FOOTER_MIN_PT = 12.0, 9.0
LEGEND_PT, LEGEND_MIN_PT = 14.0, 11.0
CODE_PT = 14.0
LABEL_PT = 20.0
FORMULA_PT = 28.0
FORMULA_DPI = 300
COMBINE_MIN_PT = 18.0  # deviations and known gaps share a slide only at this size or larger

LINE = 1.2
"""Line height over font size used for measuring: LibreOffice 7.4 sets Liberation Sans lines 1.12 em apart,
PowerPoint single spacing is 1.2 em; the larger keeps both inside the measured height."""
WIDTH_SAFETY = 1.05
"""Measured widths are taken this much wider. Calibrated with LibreOffice 7.4: of 400 words and numbers (12-24 pt,
regular and bold) each in a table cell exactly as wide as measured, LibreOffice broke every slide's worth at a
factor of 1.00 and none at 1.01; 1.05 leaves room for other renderers and versions."""
CELL_MX, CELL_MY = 6.0, 3.0  # table cell margins (left/right, top/bottom), in points
BULLET_INDENT = 0.9  # hanging indent of a bullet, in em
NUMBER_INDENT = 1.8  # hanging indent of a numbered item (room for "10." and a gap), in em

MAX_MAIN_SLIDES = 15
"""Most slides before the appendix divider of a paper's deck (title slide included)."""

_EMU_PER_PT = 12700
_FIXED_DATE = _dt.datetime(2000, 1, 1)
_ZIP_DATE = (2000, 1, 1, 0, 0, 0)
_REF = 1000  # PIL size at which widths are measured; they scale linearly with the point size
_NUMBER_START = re.compile(r"^[+\-−±~≈<>≤≥(]*\d")
_LETTER_RUN = re.compile(r"[^\W\d_]{4,}")


def _emu(pt: float) -> int:
    return round(pt * _EMU_PER_PT)


# ----------------------------------------------------------------------------------------------- measuring text

@dataclass(frozen=True)
class _Face:
    font: Any
    covered: frozenset
    path: str


def _font_file(family: str, bold: bool) -> str | None:
    """The TTF of ``family`` (regular or bold): matplotlib's font manager, else fc-match; None when missing."""
    from matplotlib import font_manager as fm
    from matplotlib.ft2font import FT2Font

    candidates = []
    try:
        candidates.append(fm.findfont(fm.FontProperties(family=family, weight="bold" if bold else "normal"),
                                      fallback_to_default=False, rebuild_if_missing=False))
    except ValueError:
        pass
    if shutil.which("fc-match"):  # a font installed after matplotlib built its font cache
        out = subprocess.run(["fc-match", "-f", "%{file}", f"{family}:{'bold' if bold else 'regular'}"],
                             capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(out.stdout.strip())
    for path in candidates:
        try:
            font = FT2Font(path)
        except (OSError, RuntimeError):
            continue
        if font.family_name == family and ("Bold" in font.style_name) == bold:
            return path
    return None


@functools.cache
def _faces(bold: bool) -> tuple[_Face, _Face]:
    """(measuring face, face for the characters it lacks): Liberation Sans, else DejaVu Sans, then DejaVu Sans."""
    from matplotlib.ft2font import FT2Font

    dejavu = _font_file("DejaVu Sans", bold)
    if dejavu is None:
        raise NnqError("matplotlib's DejaVu Sans font is missing; reinstall matplotlib")
    faces = []
    for path in (_font_file("Liberation Sans", bold) or dejavu, dejavu):
        faces.append(_Face(ImageFont.truetype(path, _REF), frozenset(FT2Font(path).get_charmap()), path))
    return faces[0], faces[1]


def measuring_font(bold: bool = False) -> str:
    """The TTF file that widths are measured with (Liberation Sans where installed, else DejaVu Sans)."""
    return _faces(bold)[0].path


@functools.lru_cache(maxsize=200_000)
def _width_ref(text: str, bold: bool) -> float:
    primary, fallback = _faces(bold)
    total, run, face = 0.0, "", primary
    for ch in text:
        f = primary if ord(ch) in primary.covered else fallback
        if f is not face and run:
            total += face.font.getlength(run)
            run = ""
        face = f
        run += ch
    return total + (face.font.getlength(run) if run else 0.0)


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """Width of one line of ``text`` in points at ``size`` pt, with the safety factor of :data:`WIDTH_SAFETY`."""
    return _width_ref(text, bold) * size / _REF * WIDTH_SAFETY


def wrap_text(text: str, size: float, width: float, *, bold: bool = False) -> list[str]:
    """Greedy word wrap at spaces (never inside a word) as the renderer does; explicit newlines are kept.

    A word wider than ``width`` stays whole on its own line (the caller widens the box).
    """
    space = text_width(" ", size, bold=bold)
    lines: list[str] = []
    for para in str(text).split("\n"):
        words = para.split()
        if not words:
            lines.append("")
            continue
        cur, cur_w = words[0], text_width(words[0], size, bold=bold)
        for w in words[1:]:
            ww = text_width(w, size, bold=bold)
            if cur_w + space + ww <= width:
                cur, cur_w = f"{cur} {w}", cur_w + space + ww
            else:
                lines.append(cur)
                cur, cur_w = w, ww
        lines.append(cur)
    return lines


def _widest_word(text: str, size: float, bold: bool) -> float:
    return max((text_width(w, size, bold=bold) for w in str(text).split()), default=0.0)


def _widest_line(text: str, size: float, bold: bool) -> float:
    return max((text_width(line, size, bold=bold) for line in str(text).split("\n")), default=0.0)


def _fits_line(text: str, size: float, width: float, bold: bool = False) -> bool:
    return "\n" not in text and text_width(text, size, bold=bold) <= width


def _one_line_size(text: str, width: float, max_size: float, min_size: float, *, bold: bool = False) -> float | None:
    """The largest size (in 0.5 pt steps from ``max_size`` down to ``min_size``) at which ``text`` fits one line."""
    size = max_size
    while size >= min_size - 1e-9:
        if _fits_line(text, size, width, bold):
            return size
        size -= 0.5
    return None


def _truncate(text: str, size: float, width: float) -> str:
    """``text`` cut at a word boundary so that it, with an ellipsis, fits one line."""
    words = text.split(" ")
    while len(words) > 1 and not _fits_line(" ".join(words) + " …", size, width):
        words.pop()
    return " ".join(words) + " …"


def format_cell(value: Any) -> str:
    """Formats one table cell: floats with two decimals, ``None`` as an em dash.

    Args:
        value: Any value.

    Returns:
        The cell text.
    """
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.2f}" if math.isfinite(value) else str(value)
    return str(value)


def _is_number(text: str) -> bool:
    """A cell that must never wrap: a number with its unit or spread (``0.81 ± 0.04 (n=4)``, ``37.6×``, ``1 MiB``)."""
    return bool(text) and len(text) <= 32 and any(c.isdigit() for c in text) and not _LETTER_RUN.search(text)


def _is_numeric_column(cells: Sequence[str]) -> bool:
    """Right-aligned: every cell starts as a number does (or is empty / a dash) and at least one is a number."""
    filled = [c for c in cells if c.strip() and c.strip() != MISSING]
    return bool(filled) and all(_NUMBER_START.match(c.strip()) and _is_number(c) for c in filled)


# ------------------------------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class Source:
    """Where a slide's numbers come from: printed as the slide's one footer line; its files listed in the notes.

    Attributes:
        footer: The footer line, e.g. ``"runs: lenet5_mnist s0–3 (MNIST) · commit 59c590b"``.
        files: The files behind the slide's numbers (repo-relative where possible), listed in the speaker notes.
        short: A shorter footer that :func:`combine` falls back to when the joined line is too long.
        detail: The full provenance when ``footer`` had to be shortened (written into the speaker notes).
    """

    footer: str
    files: tuple[str, ...] = ()
    short: str | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        files = (self.files,) if isinstance(self.files, (str, Path)) else self.files
        object.__setattr__(self, "files", tuple(_rel(f) for f in files))


def _rel(path: str | Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def _fits_footer(text: str) -> bool:
    return _fits_line(text, FOOTER_PT, BODY_W)


def _seeds(seeds: Sequence[int | None]) -> str:
    """``[0, 1, 2, 3] -> "s0–3"``, ``[0, 1, 2, 5] -> "s0–2,5"``, ``[1, 3] -> "s1,3"``; empty without seeds."""
    vals = sorted({s for s in seeds if s is not None})
    if not vals:
        return ""
    parts, start = [], vals[0]
    for a, b in zip(vals, vals[1:] + [None]):
        if b is None or b != a + 1:
            parts.append(f"{start}" if a == start else f"{start},{a}" if a == start + 1 else f"{start}–{a}")
            start = b
    return "s" + ",".join(parts)


def _preset_label(preset: str) -> str:
    return QUICK_LABEL if preset == "quick" else preset


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _commit_text(commits: dict[str, bool]) -> str:
    names = [c + ("+dirty" if d else "") for c, d in commits.items()]
    return f"commit {names[0]}" if len(names) == 1 else f"commits {', '.join(names)}"


def runs_source(runs: Sequence[Any], *, extra_files: Sequence[str | Path] = ()) -> Source:
    """The Source of numbers computed from approved runs.

    The footer names presets (the ``quick`` preset in words, never mistaken for paper scale), seeds, data sets
    and commits; when that is too long for one line it is merged step by step (commits counted, seeds counted,
    presets counted), the full text going into the speaker notes.

    Args:
        runs: :class:`common.results.ApprovedRun` objects (or :class:`common.summary.Summary` rows).
        extra_files: Further files the slide's numbers come from (e.g. a run's ``stages.json``).

    Returns:
        ``Source("runs: lenet5_mnist s0–3 (MNIST) · commit 59c590b", files=(each run's summary.json and
        points.json where it has one, then extra_files))``.
    """
    if not runs:
        raise NnqError("runs_source needs at least one run; load them with common.results.load_approved")
    sums = [getattr(r, "summary", r) for r in runs]
    by_data: dict[str, dict[str, list[int | None]]] = {}
    commits: dict[str, bool] = {}
    for s in sums:
        by_data.setdefault(s.dataset or "data unknown", {}).setdefault(s.preset, []).append(s.seed)
        c = (s.commit or "unknown")[:7]
        commits[c] = commits.get(c, False) or bool(s.dirty)
    n = len(sums)
    head = "run" if n == 1 else "runs"

    def groups(with_seeds: bool) -> str:
        out = []
        for data, presets in by_data.items():
            items = []
            for p, seeds in presets.items():
                tail = _seeds(seeds) if with_seeds else (f"×{len(seeds)}" if len(seeds) > 1 else "")
                items.append(f"{_preset_label(p)} {tail}".strip())
            out.append(f"{', '.join(items)} ({data})")
        return "; ".join(out)

    n_commits = _count(len(commits), "commit") + (" (some dirty)" if any(commits.values()) else "")
    presets = {p for d in by_data.values() for p in d}
    quick = f", incl. {QUICK_LABEL}" if "quick" in presets else ""
    counted = f"{n} {head} of {_count(len(presets), 'preset')}{quick}"
    condensed = f"{counted} on {_count(len(by_data), 'data set')} · {n_commits}"
    ladder = [f"{head}: {groups(True)} · {_commit_text(commits)}",
              f"{head}: {groups(True)} · {n_commits}",
              f"{head}: {groups(False)} · {n_commits}",
              f"{counted} ({', '.join(by_data)}) · {n_commits}",
              condensed]
    footer = next((t for t in ladder if _fits_footer(t)), None) or _truncate(condensed, FOOTER_PT, BODY_W)
    files = [Path(r.dir) / name for r in runs if hasattr(r, "dir") for name in ("summary.json", "points.json")
             if name == "summary.json" or (Path(r.dir) / name).is_file()] + list(extra_files)
    return Source(footer, tuple(files), short=condensed if len(condensed) < len(footer) else None,
                  detail="" if footer == ladder[0] else ladder[0])


def file_source(path: str | Path, *, what: str | None = None) -> Source:
    """The Source of numbers read from one file, e.g. a benchmark JSON written by ``benchmarks/_meta.py``.

    Args:
        path: The file.
        what: What the file is, printed before its name (default ``"benchmark"`` for a JSON with a
            ``machine`` record, else ``"file"``).

    Returns:
        e.g. ``Source("benchmark: xnor_gemm.json · AMD EPYC, 2 cores · commit 741100b", ("benchmarks/...",))``.
    """
    p = Path(path)
    if not p.is_file():
        raise NnqError(f"source file {p} not found; run the benchmark or results step that writes it")
    machine = None
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise NnqError(f"{p} is not valid JSON ({exc}); rerun what writes it") from None
        machine = data.get("machine") if isinstance(data, dict) else None
    head = f"{what or ('benchmark' if machine else 'file')}: {p.name}"
    parts = [head]
    if isinstance(machine, dict):
        cpu, cores, device = machine.get("cpu"), machine.get("cpu_count"), machine.get("device")
        if cpu:
            parts.append(f"{cpu}, {cores} cores" if cores else str(cpu))
        if device and device != "cpu":
            parts.append(str(device))
        if machine.get("commit"):
            parts.append(f"commit {machine['commit'][:7]}" + ("+dirty" if machine.get("dirty") else ""))
    footer = " · ".join(parts)
    if not _fits_footer(footer):
        footer = _truncate(footer, FOOTER_PT, BODY_W)
    return Source(footer, (p,), short=head if head != footer else None)


def paper_source(paper: str, ref: str) -> Source:
    """The Source of the paper's own reported figures: ``"the paper's figures (Table 2)"``."""
    return Source(f"the paper's figures ({ref})", (f"papers/{paper}/paper_numbers.py",))


def combine(*sources: Source | None) -> Source:
    """One Source of several: their footers joined on one line (their short forms where it is too long) and
    the union of their files."""
    srcs = [s for s in sources if s is not None]
    if not srcs:
        raise NnqError("combine needs at least one Source")
    uniq: list[Source] = []
    for s in srcs:
        if s.footer not in [u.footer for u in uniq]:
            uniq.append(s)
    parts = [s.footer for s in uniq]
    full = "; ".join(parts)
    text = full
    order = sorted(range(len(uniq)), key=lambda i: -len(parts[i]))
    for i in order:
        if _fits_footer(text):
            break
        if uniq[i].short:
            parts[i] = uniq[i].short
            text = "; ".join(parts)
    if not _fits_footer(text):
        text = _truncate(text, FOOTER_PT, BODY_W)
    files = tuple(dict.fromkeys(f for s in srcs for f in s.files))
    details = [s.detail for s in uniq if s.detail]
    detail = "\n".join(([full] if text != full else []) + details)
    return Source(text, files, detail=detail)


# --------------------------------------------------------------------------------------------- slide content

@dataclass
class Formula:
    """One equation of the paper: rendered from mathtext, beside its number and the code that computes it.

    Attributes:
        label: The paper's equation number, e.g. ``"Eq. (6)"``.
        latex: matplotlib mathtext, e.g. ``r"$\\alpha^* = \\frac{1}{n}\\Vert W\\Vert_{\\ell 1}$"``.
        code: Where it is implemented, e.g. ``"papers/xnor/xnor.py: bwn_alpha"``.
        note: Optional short words under the formula.
    """

    label: str
    latex: str
    code: str
    note: str = ""


@dataclass
class Table:
    """A table slide (continued on further slides when it is too tall).

    Attributes:
        title: Slide title.
        header: Column names.
        rows: One sequence of cells per row (formatted with :func:`common.report.format_cell`).
        source: Where the numbers come from.
        legend: One line under the table (abbreviations, what the columns mean).
        notes: Extra speaker notes (the files of ``source`` are always listed).
    """

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    source: Source
    legend: str | None = None
    notes: str = ""


@dataclass
class Figure:
    """A figure slide: the PNG scaled to fit between title and footer, centred."""

    title: str
    png: str | Path
    source: Source
    notes: str = ""


@dataclass
class Bullets:
    """A list of bullets (continued on further slides when it is too long).

    Attributes:
        title: Slide title (or the list's heading where lists share a slide).
        items: One string per bullet.
        source: Where its numbers come from (default: the deck's default source).
        notes: Extra speaker notes.
        numbered: Number the items 1, 2, ... (e.g. deviations numbered as in the README) instead of bullets.
    """

    title: str
    items: Sequence[str]
    source: Source | None = None
    notes: str = ""
    numbered: bool = False


class _Para(NamedTuple):
    """One paragraph of a bullet box: a heading, a bullet, or item ``number`` of a numbered list."""

    text: str
    heading: bool = False
    number: int | None = None

    def indent(self, size: float) -> float:
        return 0.0 if self.heading else (NUMBER_INDENT if self.number else BULLET_INDENT) * size


def _items(b: Bullets) -> list[_Para]:
    return [_Para(str(t), number=k if b.numbered else None) for k, t in enumerate(b.items, 1)]


# ------------------------------------------------------------------------------------------------- layout

@dataclass
class TableLayout:
    """A table measured for the slide: font size, column widths, row heights and the rows of each page (points)."""

    size: float
    col_widths: list[float]
    header_height: float
    row_heights: list[float]
    pages: list[list[int]]
    numeric: list[bool]
    nowrap: list[list[bool]] = field(default_factory=list)

    @property
    def width(self) -> float:
        return sum(self.col_widths)

    def page_height(self, k: int) -> float:
        return self.header_height + sum(self.row_heights[i] for i in self.pages[k])


def _cell_height(text: str, size: float, width: float, bold: bool) -> float:
    return len(wrap_text(text, size, width - 2 * CELL_MX, bold=bold)) * LINE * size + 2 * CELL_MY


def _paginate(heights: Sequence[float], capacity: float, max_items: int | None = None) -> list[list[int]] | None:
    """Greedy: items in order onto pages of at most ``capacity`` (and ``max_items``); None when one alone is taller."""
    pages: list[list[int]] = [[]]
    used = 0.0
    for i, h in enumerate(heights):
        if h > capacity:
            return None
        if pages[-1] and (used + h > capacity or (max_items is not None and len(pages[-1]) >= max_items)):
            pages.append([])
            used = 0.0
        pages[-1].append(i)
        used += h
    return pages


def _balanced(heights: Sequence[float], capacity: float, max_items: int | None = None) -> list[list[int]] | None:
    """The fewest pages of at most ``capacity``, the items spread evenly over them (smallest page capacity)."""
    pages = _paginate(heights, capacity, max_items)
    if pages is None or len(pages) == 1:
        return pages
    lo, hi = max(heights), capacity
    for _ in range(40):
        mid = (lo + hi) / 2
        p = _paginate(heights, mid, max_items)
        if p is not None and len(p) <= len(pages):
            hi = mid
        else:
            lo = mid
    return _paginate(heights, hi, max_items)


def layout_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, width: float = BODY_W,
                 height: float = BODY_BOTTOM - BODY_TOP, max_size: float = TABLE_PT,
                 min_size: float = TABLE_MIN_PT, name: str = "table") -> TableLayout:
    """Measures a table for a slide body of ``width`` x ``height`` points.

    Number cells (:func:`_is_number`) never wrap: their column is at least as wide as the widest of them.
    Text cells wrap at spaces only: their column is at least as wide as their widest word. Space beyond the
    minimum goes to the columns whose text would otherwise wrap, in proportion to what each lacks. Every
    width includes the cell margins. The font is the largest size (1 pt steps down to ``min_size``) at which
    the table needs no more pages than at ``min_size``; the rows are then spread evenly over those pages.

    Raises:
        NnqError: If the columns cannot fit ``width`` even at ``min_size``.
    """
    n_cols = len(header)
    cols = [[r[j] for r in rows] for j in range(n_cols)]
    numeric = [_is_numeric_column(c) for c in cols]
    nowrap = [[_is_number(c) for c in r] for r in rows]
    candidates = []
    size = max_size
    narrowest = None
    while size >= min_size - 1e-9:
        lo, nat = [], []
        for j in range(n_cols):
            lo_j = _widest_word(header[j], size, True)
            nat_j = _widest_line(header[j], size, True)
            for i, r in enumerate(rows):
                w_line = _widest_line(r[j], size, False)
                lo_j = max(lo_j, w_line if nowrap[i][j] else _widest_word(r[j], size, False))
                nat_j = max(nat_j, w_line)
            lo.append(lo_j + 2 * CELL_MX + 0.5)
            nat.append(nat_j + 2 * CELL_MX + 0.5)
        if sum(lo) > width:
            narrowest = sum(lo) if narrowest is None else min(narrowest, sum(lo))
            size -= 1
            continue
        if sum(nat) <= width:
            widths = nat
        else:
            extra = width - sum(lo)
            want = [n - m for n, m in zip(nat, lo)]
            widths = [m + extra * w / sum(want) for m, w in zip(lo, want)]
        head_h = max(_cell_height(h, size, w, True) for h, w in zip(header, widths))
        row_h = [max(_cell_height(c, size, w, False) for c, w in zip(r, widths)) for r in rows]
        pages = _paginate(row_h, height - head_h) if rows else [[]]
        if pages is not None:
            candidates.append(TableLayout(size, widths, head_h, row_h, pages, numeric, nowrap))
        size -= 1
    if not candidates:
        need = f"{narrowest / 72:.1f} in" if narrowest else "more height"
        raise NnqError(f"{name} does not fit a slide even at {min_size:g} pt (its columns need {need}, the slide "
                       f"has {width / 72:.1f} in): use shorter header words, fewer columns, or move a repeated "
                       "row-label prefix into the legend")
    fewest = min(len(c.pages) for c in candidates)
    best = next(c for c in candidates if len(c.pages) == fewest)
    if fewest > 1:
        best.pages = _balanced(best.row_heights, height - best.header_height) or best.pages
    return best


def _layout_paragraphs(paras: Sequence[_Para], width: float, height: float, max_size: float,
                       min_size: float, name: str) -> tuple[float, list[list[int]], list[float]]:
    """Paragraphs measured for a box: (size, paragraphs of each page, their heights)."""
    units: list[list[int]] = []  # a heading stays on the page of the bullet that follows it
    for i in range(len(paras)):
        if units and paras[units[-1][-1]].heading:
            units[-1].append(i)
        else:
            units.append([i])
    candidates = []
    size = max_size
    while size >= min_size - 1e-9:
        heights: list[float] | None = []
        for para in paras:
            indent = para.indent(size)
            if _widest_word(para.text, size, para.heading) > width - indent:
                heights = None
                break
            lines = len(wrap_text(para.text, size, width - indent, bold=para.heading))
            heights.append(lines * LINE * size + _space_after(size) + (_space_before(size) if para.heading else 0))
        unit_h = [sum(heights[i] for i in u) for u in units] if heights is not None else None
        pages = _paginate(unit_h, height) if unit_h is not None else None
        if pages is not None:
            candidates.append((size, pages, heights, unit_h))
        size -= 1
    if not candidates:
        raise NnqError(f"{name}: a bullet does not fit a slide even at {min_size:g} pt; split it into shorter bullets")
    fewest = min(len(c[1]) for c in candidates)
    size, pages, heights, unit_h = next(c for c in candidates if len(c[1]) == fewest)
    if fewest > 1:
        pages = _balanced(unit_h, height) or pages
    return size, [[i for u in page for i in units[u]] for page in pages], heights


def _space_after(size: float) -> float:
    return round(0.35 * size)


def _space_before(size: float) -> float:
    """Space above a heading (counted for every heading; the first of a box does not get it)."""
    return round(0.4 * size)


# ------------------------------------------------------------------------------------------------- formulas

@functools.lru_cache(maxsize=256)
def render_formula(latex: str, size: float = FORMULA_PT, dpi: int = FORMULA_DPI) -> tuple[bytes, float, float]:
    """Renders matplotlib mathtext (Computer Modern) to a PNG sized by the formula's own extent.

    Returns:
        (PNG bytes, width in points, height in points) at ``size`` pt.

    Raises:
        NnqError: If ``latex`` is not valid mathtext.
    """
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    prop = FontProperties(size=size, math_fontfamily="cm")  # Computer Modern, as in the paper
    pad = 2.0  # points around the ink, so that no glyph edge is clipped
    with mpl.rc_context({"text.color": "black"}):
        try:
            w, h, depth, _, _ = MathTextParser("path").parse(latex, dpi=72, prop=prop)
        except ValueError as exc:
            first = str(exc).strip().splitlines()
            raise NnqError(f"formula {latex!r} is not valid matplotlib mathtext ({first[-1] if first else exc}); "
                           "fix its LaTeX") from None
        fig = MplFigure(figsize=((w + 2 * pad) / 72, (h + 2 * pad) / 72))
        FigureCanvasAgg(fig)
        fig.text(pad / (w + 2 * pad), (depth + pad) / (h + 2 * pad), latex, fontproperties=prop)
        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, format="png", transparent=True, metadata={"Software": None})
    return buf.getvalue(), w + 2 * pad, h + 2 * pad


def _code_file(code: str) -> str:
    return code.split(":", 1)[0].strip()


# --------------------------------------------------------------------------------------------------- the deck

class Deck:
    """A 16:9 deck whose every slide fits: the building blocks of :func:`build_paper_deck` and the study deck.

    Every slide but the title slide gets exactly one footer (its :class:`Source`, else ``default_source``)
    and speaker notes naming the files behind its numbers.

    Args:
        title: The document title stored in the file's properties.
        default_source: The footer of slides given no Source (e.g. the paper's citation).
    """

    def __init__(self, *, title: str = "", default_source: Source | None = None) -> None:
        self.prs = Presentation()
        self.prs.slide_width, self.prs.slide_height = _emu(SLIDE_W), _emu(SLIDE_H)
        self.title = title
        self.default_source = default_source

    def __len__(self) -> int:
        return len(self.prs.slides)

    # ---- slides

    def title_slide(self, title: str, subtitle: str, *, notes: str = "") -> Any:
        """The title slide (no footer): the title on up to two lines, the subtitle on up to three."""
        slide = self.prs.slides.add_slide(self.prs.slide_layouts[0])
        t, s = slide.shapes.title, slide.placeholders[1]
        self._fill_box(t, title, MARGIN, 150, BODY_W, 130, 40, 28, bold=True, max_lines=2, align=PP_ALIGN.CENTER,
                       anchor=MSO_ANCHOR.BOTTOM, what="deck title")
        self._fill_box(s, subtitle, MARGIN, 300, BODY_W, 110, 24, 16, max_lines=3, align=PP_ALIGN.CENTER,
                       anchor=MSO_ANCHOR.TOP, color=GREY, what="deck subtitle")
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
        return slide

    def section_slide(self, title: str, *, subtitle: str | None = None, source: Source | None = None,
                      notes: str = "") -> Any:
        """A divider (e.g. "Appendix"): a large centred title, an optional subtitle, the footer."""
        slide = self._new_slide(title, source, notes, place_title=False)
        self._fill_box(slide.shapes.title, title, MARGIN, 180, BODY_W, 80, 40, 28, bold=True, max_lines=1,
                       align=PP_ALIGN.CENTER, anchor=MSO_ANCHOR.BOTTOM, what="section title")
        if subtitle:
            box = slide.shapes.add_textbox(_emu(MARGIN), _emu(280), _emu(BODY_W), _emu(120))
            self._fill_box(box, subtitle, MARGIN, 280, BODY_W, 120, 22, 14, max_lines=4, align=PP_ALIGN.CENTER,
                           anchor=MSO_ANCHOR.TOP, color=GREY, what="section subtitle")
        return slide

    def bullets_slide(self, bullets: Bullets, *, figure: Figure | None = None) -> list[Any]:
        """Bullets on as many slides as they need after shrinking to a floor; a figure beside them when it is
        upright enough to read at half width and the bullets fit beside it, else on the next slide."""
        paras = _items(bullets)
        if figure is not None:
            png_w, png_h, band = _png_info(figure.png)
            aspect = png_w / (png_h * (1 - band))
            half = (BODY_W - 24) / 2
            if aspect <= 1.4:
                try:
                    size, pages, _ = _layout_paragraphs(paras, half, BODY_BOTTOM - BODY_TOP, BODY_PT, 18,
                                                        bullets.title)
                except NnqError:
                    pages = []
                if len(pages) == 1:
                    src = combine(bullets.source or self.default_source, figure.source)
                    notes = "\n\n".join(n for n in (bullets.notes, figure.notes) if n)
                    slide = self._new_slide(bullets.title, src, notes)
                    self._paragraph_box(slide, paras, size, MARGIN, BODY_TOP, half, BODY_BOTTOM - BODY_TOP)
                    self._picture(slide, figure.png, MARGIN + half + 24, BODY_TOP, half, BODY_BOTTOM - BODY_TOP)
                    return [slide]
            return self._paragraph_slides(bullets.title, paras, bullets.source, bullets.notes) + \
                [self.figure_slide(figure)]
        return self._paragraph_slides(bullets.title, paras, bullets.source, bullets.notes)

    def sections_slides(self, title: str, sections: Sequence[Bullets], *, min_size: float = BODY_MIN_PT) -> list[Any]:
        """Several bullet lists under bold headings (their titles) on one slide, continued when too long."""
        paras: list[_Para] = []
        for b in sections:
            paras += [_Para(b.title, heading=True), *_items(b)]
        src = combine(*[b.source for b in sections if b.source]) if any(b.source for b in sections) else None
        notes = "\n\n".join(b.notes for b in sections if b.notes)
        return self._paragraph_slides(title, paras, src, notes, min_size=min_size)

    def formulas_slides(self, formulas: Sequence[Formula], *, title: str = "Formulas", source: Source | None = None,
                        notes: str = "", per_slide: int = 5) -> list[Any]:
        """The formulas rendered by mathtext, each beside its label, with its code location (text) under it.

        The slide's notes list the code files; its footer is ``source`` (default: the deck's default source).
        """
        if not formulas:
            return []
        rendered = []
        for f in formulas:
            try:
                rendered.append(render_formula(f.latex))
            except NnqError as exc:
                raise NnqError(f"{f.label}: {exc}") from None
        label_w = max(max(text_width(f.label, LABEL_PT, bold=True) for f in formulas) + 12, 90)
        x = MARGIN + label_w + 12
        avail = SLIDE_W - MARGIN - x
        blocks = []
        for f, (_, w, h) in zip(formulas, rendered):
            scale = min(1.0, avail / w)
            code_lines = wrap_text(f"code: {f.code}", CODE_PT, avail)
            if _widest_word(f"code: {f.code}", CODE_PT, False) > avail:
                raise NnqError(f"{f.label}: the code location {f.code!r} has a word too long for the slide")
            note_lines = wrap_text(f.note, CODE_PT, avail) if f.note else []
            text_h = (len(code_lines) + len(note_lines)) * LINE * CODE_PT
            blocks.append((scale, max(LINE * LABEL_PT, h * scale + 4 + text_h) + 14))
        pages = _balanced([bh for _, bh in blocks], BODY_BOTTOM - BODY_TOP, per_slide)
        if pages is None:
            raise NnqError(f"a formula of {title!r} is taller than a slide; split it")
        base = source or self.default_source
        files = tuple(dict.fromkeys(_code_file(f.code) for f in formulas))
        src = Source(base.footer if base else "", (base.files if base else ()) + files, base.short if base else None,
                     base.detail if base else "")
        slides = []
        for k, page in enumerate(pages):
            name = title if len(pages) == 1 else f"{title} ({k + 1}/{len(pages)})"
            slide = self._new_slide(name, src, notes)
            y = BODY_TOP
            for i in page:
                f, (png, w, h), (scale, bh) = formulas[i], rendered[i], blocks[i]
                fw, fh = w * scale, h * scale
                label_y = y + max(0.0, (fh - LINE * LABEL_PT) / 2)
                box = slide.shapes.add_textbox(_emu(MARGIN), _emu(label_y), _emu(label_w), _emu(LINE * LABEL_PT))
                self._set_lines(box.text_frame, [f.label], LABEL_PT, bold=True)
                pic = slide.shapes.add_picture(io.BytesIO(png), _emu(x), _emu(y), _emu(fw), _emu(fh))
                pic.name = f"Formula {f.label}"
                ty = y + fh + 4
                for text, color in ((f"code: {f.code}", GREY), (f.note, None)):
                    if not text:
                        continue
                    lines = wrap_text(text, CODE_PT, avail)
                    box = slide.shapes.add_textbox(_emu(x), _emu(ty), _emu(avail), _emu(len(lines) * LINE * CODE_PT))
                    self._set_lines(box.text_frame, [text], CODE_PT, color=color)
                    ty += len(lines) * LINE * CODE_PT
                y += bh
            slides.append(slide)
        return slides

    def table_slides(self, table: Table, *, max_pages: int | None = None) -> list[Any]:
        """A real PPTX table measured to fit (see :func:`layout_table`), on as many slides as it needs.

        Args:
            table: The table.
            max_pages: Raise when the table needs more slides than this (the headline table: 1).
        """
        header = [str(h) for h in table.header]
        for r in table.rows:
            if len(r) != len(header):
                raise NnqError(f"table {table.title!r}: row {list(r)!r} has {len(r)} cells but the header has "
                               f"{len(header)}")
        rows = [[format_cell(c) for c in r] for r in table.rows]
        legend_size, legend_lines = LEGEND_PT, []
        if table.legend:
            legend_size = _one_line_size(table.legend, BODY_W, LEGEND_PT, LEGEND_MIN_PT) or LEGEND_MIN_PT
            legend_lines = wrap_text(table.legend, legend_size, BODY_W)
        legend_h = len(legend_lines) * LINE * legend_size + (8 if legend_lines else 0)
        lay = layout_table(header, rows, height=BODY_BOTTOM - BODY_TOP - legend_h, name=f"table {table.title!r}")
        n = len(lay.pages)
        if max_pages is not None and n > max_pages:
            raise NnqError(f"table {table.title!r} needs {n} slides but may take {max_pages}: keep one row per "
                           "claim and move the rest to the appendix")
        slides = []
        for k, page in enumerate(lay.pages):
            name = table.title if n == 1 else f"{table.title} ({k + 1}/{n})"
            slide = self._new_slide(name, table.source, table.notes)
            self._table(slide, header, [rows[i] for i in page], lay, page)
            if legend_lines:
                top = BODY_TOP + lay.page_height(k) + 8
                box = slide.shapes.add_textbox(_emu(MARGIN), _emu(top), _emu(BODY_W), _emu(legend_h - 8))
                box.name = "Legend"
                self._set_lines(box.text_frame, [table.legend], legend_size, color=GREY)
            slides.append(slide)
        return slides

    def figure_slide(self, figure: Figure) -> Any:
        """The figure scaled to fit between title and footer, centred; the PNG's own footer band (written by
        :func:`common.report.save_figure`) is cropped, the slide's footer names the source instead."""
        slide = self._new_slide(figure.title, figure.source, figure.notes)
        self._picture(slide, figure.png, MARGIN, BODY_TOP, BODY_W, BODY_BOTTOM - BODY_TOP)
        return slide

    # ---- output

    def save(self, path: str | Path) -> Path:
        """Writes the deck atomically; the same slides give the same bytes (fixed dates and zip timestamps)."""
        cp = self.prs.core_properties
        cp.title = self.title
        cp.author = cp.last_modified_by = "nnq-mc-study"
        cp.created = cp.modified = cp.last_printed = _FIXED_DATE
        cp.revision = 1
        raw = io.BytesIO()
        self.prs.save(raw)
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(raw.getvalue())) as zin, zipfile.ZipFile(out, "w") as zout:
            for info in zin.infolist():
                zi = zipfile.ZipInfo(info.filename, date_time=_ZIP_DATE)
                zi.compress_type = zipfile.ZIP_DEFLATED
                zi.external_attr = info.external_attr
                zout.writestr(zi, zin.read(info.filename))
        return atomic_write_bytes(Path(path), out.getvalue())

    # ---- building blocks

    def _new_slide(self, title: str, source: Source | None, notes: str, *, place_title: bool = True) -> Any:
        src = source or self.default_source
        if src is None or not src.footer.strip():
            raise NnqError(f"slide {title!r} has no source; give it a Source (what its numbers come from) or give "
                           "the deck a default_source")
        slide = self.prs.slides.add_slide(self.prs.slide_layouts[5])
        if place_title:
            self._fill_box(slide.shapes.title, title, MARGIN, TITLE_TOP, BODY_W, TITLE_H, TITLE_PT, TITLE_MIN_PT,
                           bold=True, max_lines=1, anchor=MSO_ANCHOR.MIDDLE, what="slide title")
        else:
            slide.shapes.title.text = title
        footer = src.footer
        size = _one_line_size(footer, BODY_W, FOOTER_PT, FOOTER_MIN_PT)
        shortened = size is None
        if shortened:
            size = FOOTER_MIN_PT
            footer = _truncate(footer, size, BODY_W)
        box = slide.shapes.add_textbox(_emu(MARGIN), _emu(FOOTER_TOP), _emu(BODY_W), _emu(FOOTER_H))
        box.name = "Footer"
        self._set_lines(box.text_frame, [footer], size, color=GREY)
        lines = [notes.strip()] if notes.strip() else []
        lines.append(f"Source: {src.footer}")
        detail = "\n".join(d for d in (src.footer if shortened else "", src.detail) if d)
        if detail:
            lines.append(f"In full: {detail}")
        if src.files:
            lines.append("Files behind this slide:\n" + "\n".join(f"- {f}" for f in src.files))
        slide.notes_slide.notes_text_frame.text = "\n\n".join(lines)
        return slide

    def _fill_box(self, shape: Any, text: str, left: float, top: float, width: float, height: float,
                  max_size: float, min_size: float, *, bold: bool = False, max_lines: int = 1,
                  align: Any = PP_ALIGN.LEFT, anchor: Any = MSO_ANCHOR.TOP, color: str | None = None,
                  what: str = "text") -> float:
        """Places ``shape`` and writes ``text`` at the largest size at which it takes at most ``max_lines`` lines
        that fit ``height``."""
        size = max_size
        while size >= min_size - 1e-9:
            if _widest_word(text, size, bold) <= width:
                lines = wrap_text(text, size, width, bold=bold)
                if len(lines) <= max_lines and len(lines) * LINE * size <= height + 1e-6:
                    break
            size -= 0.5
        else:
            raise NnqError(f"the {what} {text!r} does not fit {max_lines} line(s) of the slide even at "
                           f"{min_size:g} pt; shorten it")
        shape.left, shape.top, shape.width, shape.height = _emu(left), _emu(top), _emu(width), _emu(height)
        tf = shape.text_frame
        tf.vertical_anchor = anchor
        self._set_lines(tf, [text], size, bold=bold, color=color, align=align)
        return size

    @staticmethod
    def _set_lines(tf: Any, paragraphs: Sequence[str], size: float, *, bold: bool = False, color: str | None = None,
                   align: Any = PP_ALIGN.LEFT, box: bool = True) -> None:
        """Writes paragraphs into a text frame with an explicit font and size; a box (not a table cell) also gets
        zero insets, word wrap and no autofit."""
        tf.clear()
        if box:
            tf.word_wrap = True
            tf.auto_size = MSO_AUTO_SIZE.NONE
            tf.margin_left = tf.margin_right = tf.margin_top = tf.margin_bottom = 0
        for k, text in enumerate(paragraphs):
            p = tf.paragraphs[0] if k == 0 else tf.add_paragraph()
            p.alignment = align
            if text:  # an empty run would leave the line at the renderer's default size
                run = p.add_run()
                run.text = text
                _font(run.font, size, bold, color)
            end = p._p.get_or_add_endParaRPr()
            end.set("sz", str(round(size * 100)))
            end.append(end.makeelement(qn("a:latin"), {"typeface": FONT}))

    def _paragraph_slides(self, title: str, paras: Sequence[_Para], source: Source | None, notes: str,
                          *, min_size: float = BODY_MIN_PT) -> list[Any]:
        size, pages, _ = _layout_paragraphs(paras, BODY_W, BODY_BOTTOM - BODY_TOP, BODY_PT, min_size, title)
        slides = []
        for k, page in enumerate(pages):
            name = title if len(pages) == 1 else f"{title} ({k + 1}/{len(pages)})"
            slide = self._new_slide(name, source, notes)
            self._paragraph_box(slide, [paras[i] for i in page], size, MARGIN, BODY_TOP, BODY_W,
                                BODY_BOTTOM - BODY_TOP)
            slides.append(slide)
        return slides

    def _paragraph_box(self, slide: Any, paras: Sequence[_Para], size: float, left: float, top: float,
                       width: float, height: float) -> Any:
        box = slide.shapes.add_textbox(_emu(left), _emu(top), _emu(width), _emu(height))
        box.name = "Body"
        tf = box.text_frame
        self._set_lines(tf, [para.text for para in paras], size)
        for k, (p, para) in enumerate(zip(tf.paragraphs, paras)):
            p.space_after = Pt(_space_after(size))
            p.space_before = Pt(_space_before(size) if para.heading and k else 0)
            pPr = p._p.get_or_add_pPr()  # a:pPr holds only spcBef/spcAft so far: bullets go after them
            if para.heading:
                for r in p.runs:
                    r.font.bold = True
                pPr.append(pPr.makeelement(qn("a:buNone"), {}))
                continue
            indent = _emu(para.indent(size))
            pPr.set("marL", str(indent))
            pPr.set("indent", str(-indent))
            if para.number:  # the number as text before a tab to the indent: renderers differ on auto-numbering
                pPr.append(pPr.makeelement(qn("a:buNone"), {}))
                p.runs[0].text = f"{para.number}.\t{para.text}"
            else:
                pPr.append(pPr.makeelement(qn("a:buFont"), {"typeface": FONT}))
                pPr.append(pPr.makeelement(qn("a:buChar"), {"char": "•"}))
        return box

    def _picture(self, slide: Any, png: str | Path, left: float, top: float, width: float, height: float) -> Any:
        w, h, band = _png_info(png)
        shown_h = h * (1 - band)
        scale = min(width / w, height / shown_h)
        pw, ph = w * scale, shown_h * scale
        pic = slide.shapes.add_picture(str(png), _emu(left + (width - pw) / 2), _emu(top + (height - ph) / 2),
                                       _emu(pw), _emu(ph))
        if band:
            pic.crop_bottom = band
        return pic

    def _table(self, slide: Any, header: Sequence[str], rows: Sequence[Sequence[str]], lay: TableLayout,
               idx: Sequence[int]) -> Any:
        heights = [lay.header_height] + [lay.row_heights[i] for i in idx]
        shape = slide.shapes.add_table(len(rows) + 1, len(header), _emu(MARGIN), _emu(BODY_TOP), _emu(lay.width),
                                       _emu(sum(heights)))
        shape.name = "Table"
        tbl = shape.table
        for j, w in enumerate(lay.col_widths):
            tbl.columns[j].width = _emu(w)
        for i, h in enumerate(heights):
            tbl.rows[i].height = _emu(h)
        for i, row in enumerate([list(header), *rows]):
            for j, text in enumerate(row):
                cell = tbl.cell(i, j)
                cell.margin_left = cell.margin_right = _emu(CELL_MX)
                cell.margin_top = cell.margin_bottom = _emu(CELL_MY)
                cell.vertical_anchor = MSO_ANCHOR.MIDDLE
                align = PP_ALIGN.RIGHT if lay.numeric[j] else PP_ALIGN.LEFT
                self._set_lines(cell.text_frame, str(text).split("\n"), lay.size, bold=i == 0, align=align, box=False)
        return shape


def _font(font: Any, size: float, bold: bool, color: str | None) -> None:
    font.name = FONT
    font.size = Pt(size)
    font.bold = bold
    if color:
        font.color.rgb = RGBColor.from_string(color.lstrip("#"))


def _png_info(png: str | Path) -> tuple[int, int, float]:
    """(width, height, footer band fraction) of a PNG/JPEG; the band is 0 unless save_figure recorded one."""
    p = Path(png)
    if not p.is_file() or p.suffix.lower() not in {".png", ".jpg", ".jpeg"}:
        raise NnqError(f"deck figure {p} is missing or not a PNG/JPEG; regenerate it with save_figure")
    with Image.open(p) as im:
        w, h = im.size
        try:
            band = float(im.info.get(FOOTER_BAND_KEY, 0.0))
        except ValueError:
            band = 0.0
    return w, h, band if 0.0 <= band < 0.5 else 0.0


# ------------------------------------------------------------------------------------------------ paper deck

def build_paper_deck(path: str | Path, *, title: str, subtitle: str, idea: Bullets, idea_figure: Figure | None,
                     formulas: Sequence[Formula], headline: Table, figures: Sequence[Figure], deviations: Bullets,
                     known_gaps: Bullets, takeaways: Bullets, appendix: Sequence[Table | Figure] = ()) -> Path:
    """A paper's deck, in the study's one order.

    title -> idea (bullets; ``idea_figure`` beside them or on the next slide) -> formulas (rendered) -> the
    headline "paper vs ours" table (one slide) -> ``figures`` -> deviations and known gaps (one slide when both
    fit it at 18 pt or more, else one each) -> takeaways -> "Appendix" divider -> ``appendix`` tables and figures.
    Slides without a Source of their own carry the subtitle (the paper's citation) as their footer.

    Args:
        path: The ``.pptx`` to write (atomically; its folder is created).
        title: The paper's title.
        subtitle: Authors, venue and year.
        idea: The idea in a few bullets.
        idea_figure: The method's figure or diagram, or None.
        formulas: The paper's key equations.
        headline: The "paper vs ours" table; it must fit one slide.
        figures: The key figures of the talk.
        deviations: How we differ from the paper.
        known_gaps: What is missing or does not match yet.
        takeaways: What to remember.
        appendix: Further tables and figures (per-layer tables, quick runs, ...).

    Returns:
        The path written.

    Raises:
        NnqError: If the part before the appendix takes more than :data:`MAX_MAIN_SLIDES` slides, the headline
            table needs more than one slide, or any slide content cannot fit.
    """
    deck = Deck(title=title, default_source=Source(subtitle))
    deck.title_slide(title, subtitle)
    deck.bullets_slide(idea, figure=idea_figure)
    deck.formulas_slides(formulas)
    deck.table_slides(headline, max_pages=1)
    for f in figures:
        deck.figure_slide(f)
    if known_gaps.items and deviations.items:
        paras = [_Para(deviations.title, heading=True), *_items(deviations),
                 _Para(known_gaps.title, heading=True), *_items(known_gaps)]
        try:
            one = len(_layout_paragraphs(paras, BODY_W, BODY_BOTTOM - BODY_TOP, BODY_PT, COMBINE_MIN_PT, "")[1]) == 1
        except NnqError:
            one = False
        if one:
            deck.sections_slides("Deviations and known gaps", [deviations, known_gaps], min_size=COMBINE_MIN_PT)
        else:
            deck.bullets_slide(deviations)
            deck.bullets_slide(known_gaps)
    else:
        for b in (deviations, known_gaps):
            if b.items:
                deck.bullets_slide(b)
    deck.bullets_slide(takeaways)
    if len(deck) > MAX_MAIN_SLIDES:
        raise NnqError(f"the deck {title!r} has {len(deck)} slides before the appendix (at most {MAX_MAIN_SLIDES}): "
                       "move figures or long tables to the appendix, or shorten the bullets")
    if appendix:
        deck.section_slide("Appendix")
        for item in appendix:
            if isinstance(item, Table):
                deck.table_slides(item)
            elif isinstance(item, Figure):
                deck.figure_slide(item)
            else:
                raise NnqError(f"appendix item {item!r} is neither a deck Table nor a deck Figure")
    return deck.save(path)


# ------------------------------------------------------------------------------------------ headline helpers

def mean_sd(values: Sequence[float], digits: int = 2) -> str:
    """``"0.81 ± 0.04 (n=4)"``: mean ± sample standard deviation (n − 1) over seeds; ``"0.85 (n=1)"`` for one.

    Returns an em dash for no values.
    """
    v = [float(x) for x in values]
    if not v:
        return MISSING
    if not all(math.isfinite(x) for x in v):
        raise NnqError(f"mean_sd got a non-finite value in {values!r}")
    mean = sum(v) / len(v)
    if len(v) == 1:
        return f"{mean:.{digits}f} (n=1)"
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1))
    return f"{mean:.{digits}f} ± {sd:.{digits}f} (n={len(v)})"


def same_direction(ours_delta: float, paper_delta: float, tol: float = 0.0) -> str:
    """Whether our change goes the paper's way, for relative claims (compare directions, never subtract
    unlike metrics).

    Args:
        ours_delta: Our change (e.g. accuracy of A minus accuracy of B, in our runs).
        paper_delta: The paper's change for the same comparison.
        tol: Our changes within ±tol (e.g. the seeds' spread) count as no change.

    Returns:
        ``"flat"`` when our change is within ``tol``; else ``"yes"`` when it has the paper's sign, ``"no"`` when
        it has the opposite sign or the paper reports no change.
    """
    if not (math.isfinite(ours_delta) and math.isfinite(paper_delta)):
        raise NnqError(f"same_direction needs finite changes, got {ours_delta!r} and {paper_delta!r}")
    if abs(ours_delta) <= tol:
        return "flat"
    return "yes" if paper_delta != 0 and (ours_delta > 0) == (paper_delta > 0) else "no"
