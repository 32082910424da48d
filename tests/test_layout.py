"""The layout holds: notebooks tell the story, the package carries the library, imports point one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gpu_notebooks"
NOTEBOOKS = ["rapids_benchmark_dashboard.py", "llm_finetuning_dashboard.py"]
APPS = ("gpu_notebooks.rapids_benchmark", "gpu_notebooks.llm_finetuning")
NOTEBOOK_MODULES = {Path(n).stem for n in NOTEBOOKS}
MAX_MODULE_LINES = 600
MAX_CELL_LINES = 60


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every module a file imports (absolute names), wherever the import statement sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return names


def package_graph() -> dict[str, set[str]]:
    return {m: {i for i in imported(p) if i in MODULES and i != m} for m, p in MODULES.items()}


def test_every_module_says_what_it_is_in_its_first_line_and_stays_short():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree)
        assert doc and doc.splitlines()[0].strip(), f"{name} has no first-line docstring"
        assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES, (
            f"{name} is past {MAX_MODULE_LINES} lines"
        )


def test_no_module_imports_a_notebook_and_the_app_subpackages_never_import_each_other():
    for name, path in MODULES.items():
        deps = imported(path)
        assert not deps & NOTEBOOK_MODULES, f"{name} imports a notebook"
        for app in APPS:
            others = [a for a in APPS if a != app]
            if name.startswith(app):
                assert not any(d.startswith(o) for d in deps for o in others), f"{name} imports the other app"
            elif not name.startswith(APPS):  # the shared layer: gpu/, cli, registry
                assert not any(d.startswith(APPS) for d in deps), f"shared {name} imports an app module"


def test_the_package_has_no_import_cycles():
    graph = package_graph()
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " → ".join([*trail, m, d]))
            if d not in state:
                visit(d, [*trail, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_a_cycle_or_an_upward_arrow_would_be_caught(tmp_path):
    """The checks above read real imports: a module that imports a notebook is found by `imported`."""
    bad = tmp_path / "bad.py"
    bad.write_text('"""Bad."""\ndef f():\n    import rapids_benchmark_dashboard\n')
    assert imported(bad) & NOTEBOOK_MODULES


def test_learner_texts_need_neither_marimo_nor_a_gpu():
    for name, path in MODULES.items():
        if ".explain" in name:
            deps = imported(path)
            # torch may be read for facts a CPU knows (torch.finfo); nothing that needs marimo or a GPU library
            banned = {d for d in deps if d.split(".")[0] in ("marimo", "cudf", "cupy", "pynvml", "altair")}
            assert not banned, f"{name} imports {banned}"


def test_bench_and_tools_import_the_package_not_a_notebook():
    for path in [*ROOT.glob("bench/*.py"), *ROOT.glob("tools/*.py")]:
        assert not imported(path) & NOTEBOOK_MODULES, f"{path.name} imports a notebook"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_notebooks_hold_cells_only(notebook):
    source = (ROOT / notebook).read_text()
    tree = ast.parse(source)
    library = [
        n.name
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        and any(ast.unparse(d).startswith(("app.function", "app.class_definition")) for d in n.decorator_list)
    ]
    assert not library, f"{notebook} defines library helpers again: {library}"
    assert len(source.splitlines()) < 1000
    cells = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    long = [
        (c.lineno, c.end_lineno - c.lineno + 1) for c in cells if c.end_lineno - c.lineno + 1 > MAX_CELL_LINES
    ]
    assert not long, f"{notebook}: cells over {MAX_CELL_LINES} lines at {long}"
