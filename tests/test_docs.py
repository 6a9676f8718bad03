"""The documents a newcomer reads first: links that work in a clone, and one status per paper."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def local_links(md: Path) -> list[str]:
    return [t for t in LINK.findall(md.read_text()) if not re.match(r"[a-z]+://", t)]


def docs() -> list[Path]:
    return [REPO / "README.md", REPO / "schedule.md", REPO / "study" / "README.md",
            *sorted(REPO.glob("papers/*/README.md")), *sorted(REPO.glob("papers/*/*.md"))]


def test_every_local_link_of_the_documents_points_inside_the_repository():
    broken = []
    for md in docs():
        for target in local_links(md):
            path = (md.parent / target).resolve()
            if not path.is_relative_to(REPO) or not path.exists():
                broken.append(f"{md.relative_to(REPO)} -> {target}")
    assert broken == []


def statuses(md: Path, package_col: int, status_col: int) -> dict[str, str]:
    """package folder -> first word of its status, from a Markdown table whose package cell links papers/<name>."""
    out = {}
    for line in md.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) <= max(package_col, status_col):
            continue
        m = re.search(r"\(papers/(\w+)/README\.md\)", cells[package_col])
        if m:
            out[m.group(1)] = cells[status_col].split()[0].strip("*") if cells[status_col] else ""
    return out


def test_the_readme_and_the_schedule_give_every_paper_the_same_status():
    readme = statuses(REPO / "README.md", 1, 2)
    schedule = {}
    for line in (REPO / "schedule.md").read_text().splitlines():  # week tables: Package col 2, Status col 3
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for pkg_col, st_col in ((2, 3), (1, 2)):  # the extension track has no week column
            if len(cells) > st_col and (m := re.search(r"\(papers/(\w+)/README\.md\)", cells[pkg_col])):
                schedule[m.group(1)] = cells[st_col].split()[0]
    packages = {p.parent.name for p in REPO.glob("papers/*/__init__.py")}
    assert set(readme) == packages and set(schedule) == packages
    assert readme == schedule
