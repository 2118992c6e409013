"""The fixed top level and the layers a newcomer reads in the tree: generic package names resolve to this
repository, the README's layout is the tree, the core and storage import nothing above them, settings are
read in one module, and importing a module does no work."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import partitions
import resources

REPO = Path(__file__).resolve().parent.parent
CODE = [p for top in ("batch_assets", "resources", "partitions") for p in (REPO / top).rglob("*.py")]


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


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_readme_layout_matches_the_tree():
    text = (REPO / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```")[1]
    listed = set()
    for line in block.splitlines():
        if not line or line.startswith(" "):
            continue
        paths = line.split("  ")[0].split()  # the path column, then two spaces and the description
        base = Path(paths[0]).parent if paths[0].endswith(".py") else None
        for name in paths:
            path = Path(name) if "/" in name or base is None else base / name
            assert (REPO / path).exists(), f"README layout lists {path}, which is not in the tree"
            listed.add(str(path).rstrip("/"))
    packages = {str(p.parent.relative_to(REPO)) for p in (REPO / "batch_assets").glob("*/__init__.py")}
    assert packages <= listed, f"packages missing from the README layout: {sorted(packages - listed)}"


def test_core_and_storage_import_neither_dagster_nor_the_wiring():
    for layer in ("core", "storage"):
        for path in (REPO / "batch_assets" / layer).glob("*.py"):
            for module in imports(path):
                top = module.split(".")[0]
                assert top not in ("dagster", "dagster_aws", "dagster_k8s", "resources"), (path, module)
                if top == "batch_assets":
                    assert re.match(r"batch_assets\.(core|storage)\b", module), (path, module)


def test_only_the_settings_module_reads_the_environment():
    readers = [
        str(p.relative_to(REPO)) for p in CODE if re.search(r"os\.environ|os\.getenv|getenv\(", p.read_text())
    ]
    assert readers == ["batch_assets/settings.py"]


def test_registries_and_connections_are_built_by_the_resources_only():
    builders = {
        str(p.relative_to(REPO))
        for p in CODE
        if re.search(r"\bModelRegistry\(|duckdb\.connect\(", p.read_text())
    }
    assert builders == {"resources/registry.py", "resources/warehouse.py"}


def test_importing_the_wiring_reads_no_spec_file():
    code = (
        "import batch_assets.predictions, batch_assets.checks, batch_assets.sensors, batch_assets.schedules, "
        "batch_assets.datasets, batch_assets.rescore, batch_assets.cli\n"
        "info = batch_assets.datasets.demo_spec.cache_info()\n"
        "assert info.hits + info.misses == 0, info\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
