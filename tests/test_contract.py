"""The contract every paper package keeps (../shared/DESIGN.md), checked over every papers/*."""

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from common.cli import BaseConfig

REPO = Path(__file__).resolve().parent.parent
PAPERS = sorted(p.name for p in (REPO / "papers").iterdir() if p.is_dir() and (p / "__init__.py").exists())
README_SECTIONS = ("Paper", "Idea", "Equation map", "Deviations", "Reproduce", "Results", "Known gaps")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


def test_there_is_at_least_the_exemplar_paper():
    assert "bnn" in PAPERS


@pytest.mark.parametrize("paper", PAPERS)
def test_package_has_the_contract_files(paper):
    root = REPO / "papers" / paper
    for name in ("__init__.py", "README.md", "config.py", "results.py", "paper_numbers.py"):
        assert (root / name).is_file(), f"papers/{paper}/{name} missing"
    assert (root / "train.py").is_file() or (root / "quantize.py").is_file()
    assert (root / "tests" / "test_method.py").is_file() and (root / "tests" / "test_smoke.py").is_file()
    readme = (root / "README.md").read_text()
    for section in README_SECTIONS:
        assert f"## {section}" in readme, f"papers/{paper}/README.md lacks the section '{section}'"


@pytest.mark.parametrize("paper", PAPERS)
def test_presets_and_main_signature(paper):
    config = importlib.import_module(f"papers.{paper}.config")
    assert {"quick", "paper"} <= set(config.PRESETS)
    for name, cfg in config.PRESETS.items():
        assert isinstance(cfg, BaseConfig) and dataclasses.is_dataclass(cfg)
        assert cfg.preset == name
        cfg.validate()
    entry = "train" if (REPO / "papers" / paper / "train.py").exists() else "quantize"
    main = importlib.import_module(f"papers.{paper}.{entry}").main
    assert next(iter(inspect.signature(main).parameters)) == "cfg"


@pytest.mark.parametrize("paper", PAPERS)
def test_every_config_field_has_help_text(paper):
    from common.cli import field_docs

    config = importlib.import_module(f"papers.{paper}.config")
    cls = type(config.PRESETS["quick"])
    docs = field_docs(cls)
    assert [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)] == []


@pytest.mark.parametrize("paper", PAPERS)
def test_papers_do_not_import_each_other(paper):
    for path in (REPO / "papers" / paper).rglob("*.py"):
        if path.name == "results.py":  # a later paper may compare against an earlier one here only
            continue
        others = {m for m in _imports(path) if m.startswith("papers.") and m.split(".")[1] != paper}
        assert not others, f"{path.relative_to(REPO)} imports {sorted(others)}"


def test_common_imports_nothing_from_papers():
    for path in (REPO / "common").rglob("*.py"):
        assert not {m for m in _imports(path) if m == "papers" or m.startswith("papers.")}, path
