"""The fixed top level: generic package names must resolve to this repository, not to PyPI namesakes."""

from pathlib import Path

import partitions
import resources

REPO = Path(__file__).resolve().parent.parent


def test_top_level_packages_resolve_inside_this_repository():
    assert Path(resources.__file__).resolve().is_relative_to(REPO)
    assert Path(partitions.__file__).resolve().is_relative_to(REPO)


def test_no_shadowing_modules_inside_the_code_location():
    assert not (REPO / "batch_assets" / "resources.py").exists()
    assert not (REPO / "batch_assets" / "partitions.py").exists()


def test_fixed_top_level_exists():
    for name in [
        "pyproject.toml",
        "batch_assets",
        "resources",
        "partitions",
        "deployments",
        "tests",
        "workspace.yaml",
        "README.md",
        "Makefile",
        ".ci/run",
        "benchmarks",
    ]:
        assert (REPO / name).exists(), name


def test_state_folder_is_git_ignored():
    assert ".batch-assets/" in (REPO / ".gitignore").read_text().splitlines()
