"""Checks shared by the one-way import tests of a package (test_report_imports.py, test_bench_imports.py):
a graph {module: modules it imports} has no circle, and each module imports only earlier layers."""
from __future__ import annotations

from graphlib import CycleError, TopologicalSorter


def assert_no_circles(graph: dict[str, set[str]], *, package: str) -> None:
    """No import circle among the modules of `graph` (and every module takes part in the order)."""
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import circle among {package} modules: {error.args[1]}") from None
    assert set(order) == set(graph)


def assert_layers(graph: dict[str, set[str]], layers: list[set[str]]) -> None:
    """Every module is in one of `layers` and imports only modules of an earlier one."""
    layer = {name: index for index, names in enumerate(layers) for name in names}
    assert set(layer) == set(graph), "add the new module to LAYERS (and to the package docstring)"
    for module, imports in graph.items():
        later = [name for name in imports if layer[name] >= layer[module]]
        assert not later, f"{module} imports {later} of the same or a later layer"
