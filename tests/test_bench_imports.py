"""The bench package flows one way (common -> loss_sweep -> loss_table4 -> step, verdicts -> precision -> cli):
no import circles among its modules, and each imports only modules of an earlier layer
(iicrepro/bench/__init__.py). A module that imports the package itself (`from iicrepro.bench import ...`)
imports __init__, which imports every module: a circle."""
import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from import_flow import assert_layers, assert_no_circles

PACKAGE = Path(__file__).resolve().parents[1] / "iicrepro" / "bench"
LAYERS = [{"common"}, {"loss_sweep"}, {"loss_table4"}, {"step", "verdicts"}, {"precision", "memory"}, {"cli"},
          {"__init__", "__main__"}]


def bench_imports(path: Path) -> set[str]:
    """The bench modules a module imports, lazy imports inside functions included; `__init__` for the
    package itself (`from iicrepro.bench import NAME`, `import iicrepro.bench`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:  # relative imports would hide the flow
            raise AssertionError(f"{path.name}: relative import; use iicrepro.bench.NAME")
        if isinstance(node, ast.ImportFrom) and node.module == "iicrepro.bench":
            found.add("__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("iicrepro.bench."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "iicrepro.bench":
                    found.add("__init__")
                elif alias.name.startswith("iicrepro.bench."):
                    found.add(alias.name.split(".")[2])
    return found


def graph(folder: Path = PACKAGE) -> dict[str, set[str]]:
    return {path.stem: bench_imports(path) for path in sorted(folder.glob("*.py"))}


def test_no_import_circles_among_bench_modules():
    assert_no_circles(graph(), package="bench")


def test_each_module_imports_only_earlier_layers():
    assert_layers(graph(), LAYERS)


def test_the_old_flat_modules_are_gone():
    root = PACKAGE.parent
    assert not (root / "bench.py").exists() and not (root / "bench_precision.py").exists()


def test_the_checker_sees_a_circle_and_the_package_import(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from iicrepro.bench.b import x\n")  # lazy import counts
    (tmp_path / "b.py").write_text("import iicrepro.bench.a\n")
    (tmp_path / "c.py").write_text("from iicrepro.bench import main\n")
    edges = graph(tmp_path)
    assert edges == {"a": {"b"}, "b": {"a"}, "c": {"__init__"}}
    try:
        list(TopologicalSorter(edges).static_order())
    except CycleError:
        return
    raise AssertionError("a circle went unnoticed")
