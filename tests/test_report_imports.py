"""The report package flows one way (load -> frame -> tables, figures -> pages): no import circles among its
modules, and each imports only modules of an earlier layer (iicrepro/report/__init__.py)."""
import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from import_flow import assert_layers, assert_no_circles

PACKAGE = Path(__file__).resolve().parents[1] / "iicrepro" / "report"
LAYERS = [{"load"}, {"frame"}, {"tables"},
          {"tables_runs", "tables_epochs", "bench_tables", "answer", "effects", "figures"}, {"scales"}, {"pages"},
          {"__main__"}]


def report_imports(path: Path) -> set[str]:
    """The report modules a module imports (absolute `iicrepro.report.X` or `from iicrepro.report import X`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "iicrepro.report":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("iicrepro.report."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative imports would hide the flow
            raise AssertionError(f"{path.name}: relative import; use iicrepro.report.NAME")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("iicrepro.report.")}
    return found


def graph() -> dict[str, set[str]]:
    return {path.stem: report_imports(path) for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"}


def test_no_import_circles_among_report_modules():
    assert_no_circles(graph(), package="report")


def test_each_module_imports_only_earlier_layers():
    assert_layers(graph(), LAYERS)
    assert not report_imports(PACKAGE / "__init__.py"), "the package's __init__ imports nothing"


def test_the_checker_sees_a_circle(tmp_path):
    (tmp_path / "a.py").write_text("from iicrepro.report import b\n")
    (tmp_path / "b.py").write_text("from iicrepro.report.a import x\n")
    edges = {p.stem: report_imports(p) for p in tmp_path.glob("*.py")}
    assert edges == {"a": {"b"}, "b": {"a"}}
    try:
        list(TopologicalSorter(edges).static_order())
    except CycleError:
        return
    raise AssertionError("a circle went unnoticed")
