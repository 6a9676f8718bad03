"""Rewrites approved summaries of the first schema into the typed schema (common.summary.Summary).

Each paper derives its fields from the run's own files in ``tools/migrate/<paper>.py``, a module with
``migrate(old: dict, config: dict, run_dir: Path) -> dict`` returning the new summary (and, if the run measured
several models, ``points(old, config, run_dir) -> list[dict]`` for points.json). A field that cannot be derived
from the run's files is not invented: such a run is re-run instead.

    python tools/migrate_summaries.py [--check] [PAPER ...]

``--check`` only lists what would change. Summaries that already validate are left alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from common.paths import atomic_write_text  # noqa: E402
from common.summary import POINTS_FILE, SUMMARY_FILE, validate  # noqa: E402


def migrator(paper: str):
    path = REPO / "tools" / "migrate" / f"{paper}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"migrate_{paper}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("papers", nargs="*", help="papers to migrate (default: all)")
    parser.add_argument("--check", action="store_true", help="list what would change, write nothing")
    args = parser.parse_args(argv)
    papers = args.papers or sorted(p.name for p in (REPO / "papers").iterdir() if (p / "__init__.py").is_file())
    failures = 0
    for paper in papers:
        for run_dir in sorted((REPO / "papers" / paper / "results" / "runs").glob("*/")):
            old = json.loads((run_dir / SUMMARY_FILE).read_text())
            if not validate(old):
                continue
            module = migrator(paper)
            if module is None:
                print(f"{run_dir.relative_to(REPO)}: no tools/migrate/{paper}.py; re-run it instead")
                failures += 1
                continue
            config = json.loads((run_dir / "config.json").read_text())
            new = module.migrate(old, config, run_dir)
            rows = module.points(old, config, run_dir) if hasattr(module, "points") else None
            problems = validate(new) + [p for r in rows or [] for p in validate(r)]
            if problems:
                print(f"{run_dir.relative_to(REPO)}: still invalid: {'; '.join(problems)}")
                failures += 1
                continue
            print(f"{run_dir.relative_to(REPO)}: {'would migrate' if args.check else 'migrated'}")
            if not args.check:
                if rows is not None:
                    atomic_write_text(run_dir / POINTS_FILE, json.dumps(rows, indent=2) + "\n")
                atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(new, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
