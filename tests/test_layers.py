"""The house's layers, from the source itself: `measure` (the library) never imports `train` (the application),
and no project module imports one that imports it back -- counting every import, also those inside
functions and `if TYPE_CHECKING:` blocks (a lazy import dodges a cycle at run time; it does not remove it).

Inside `measure/`, rooms: a module imports only modules of its own room or of rooms below it
(ROOMS, lowest first; the top floor -- cli, pipeline, __main__ and the face -- is above them all).
`train/` and `harness/` import the face (`measure`, names in `measure.__all__`) and `measure.common`,
never a room deeper. Tests may import internals."""
from __future__ import annotations

import ast
from pathlib import Path

import measure

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("measure", "train", "harness")
# lowest first. scoring sits below sampling: the sampler reads the settings (scoring/config.py), which
# validate clusterer specs and signal names (scoring/cluster.py, scoring/signals.py); scoring never samples.
ROOMS = ("common", "records", "data", "scoring", "sampling", "analysis")
TOP = len(ROOMS)
FACE = {**measure._NAMES, **measure._MODULES}   # name on the face -> the module it comes from


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def raw_imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every absolute import in `path`, anywhere in its body: (`import a.b` -> ("a.b", [])),
    (`from a import x, y` -> ("a", ["x", "y"]))."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def project_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (`from measure.data import text` ->
    measure.data.text; a name from the face, `from measure import Report`, -> the module it comes from)."""
    found: set[str] = set()
    for module, imported in raw_imports(path):
        if not imported:
            names = [module]
        elif module == "measure":
            names = [FACE.get(a, f"measure.{a}") for a in imported]
        else:
            names = [f"{module}.{a}" for a in imported] + [module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name not in PACKAGES:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    modules = set(files)
    return {name: project_imports(path, modules) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = import_graph()
    assert "measure.common.errors" in graph["measure.cli"] and "measure.pipeline" in graph["measure.cli"]
    assert "measure.sampling.decode" in graph["measure.sampling.sample"]     # from measure.sampling import decode
    assert "measure.records.results" in graph["train.sweep_records"]         # from measure import Report


def test_no_import_cycle_anywhere():
    assert cycles(import_graph()) == []


def test_measure_never_imports_train():
    bad = {m: sorted(d for d in deps if d.startswith("train.")) for m, deps in import_graph().items()
           if m.startswith("measure.")}
    assert {m: d for m, d in bad.items() if d} == {}


def room(module: str) -> int:
    """The floor of a measure module: its room's index in ROOMS, TOP for the top floor."""
    parts = module.split(".")
    return ROOMS.index(parts[1]) if len(parts) > 1 and parts[1] in ROOMS else TOP


def test_every_measure_module_lives_in_a_room_or_on_the_top_floor():
    top = {m for m in import_graph() if m.startswith("measure") and room(m) == TOP}
    assert top == {"measure", "measure.__main__", "measure.cli", "measure.pipeline", "measure.live"}
    assert room("measure.common") == room("measure.common.errors") == 0
    assert room("measure.analysis.cascade") == ROOMS.index("analysis")


def test_a_room_imports_only_its_own_room_and_rooms_below():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith("measure") and room(d) > room(m))
           for m, deps in graph.items() if m.startswith("measure")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_room_check_catches_an_upward_import():
    upward = {"measure.common.io": {"measure.records.records"}, "measure.scoring.config": {"measure.sampling.sample"}}
    assert {m: d for m, deps in upward.items() for d in deps if room(d) > room(m)} == {
        "measure.common.io": "measure.records.records", "measure.scoring.config": "measure.sampling.sample"}


def test_train_and_harness_import_the_face_or_common_only():
    deep: dict[str, list[str]] = {}
    off_face: dict[str, list[str]] = {}
    for pkg in ("train", "harness"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            for module, imported in raw_imports(path):
                if module.startswith("measure.") and module.split(".")[1] != "common":
                    deep.setdefault(module_name(path), []).append(module)
                if module == "measure":
                    missing = [a for a in imported if a not in measure.__all__]
                    if missing:
                        off_face.setdefault(module_name(path), []).extend(missing)
    assert deep == {}, "train/ and harness/ import `measure` (the face) or `measure.common`, nothing deeper"
    assert off_face == {}, "every name train/ and harness/ take from `measure` is in measure.__all__"


def test_the_face_is_light_and_every_name_on_it_resolves():
    import subprocess
    import sys
    code = ("import sys, measure; heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert sorted(measure.__all__) == sorted(FACE) and len(set(measure.__all__)) == len(measure.__all__)
    files = {module_name(p) for p in (REPO / "measure").rglob("*.py")}
    for name, module in FACE.items():
        assert module in files, (name, module)
        assert room(module) >= 0
    for name, module in measure._NAMES.items():     # defined (or imported at the top) in that module
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        top_names = set()
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                top_names.add(node.name)
            elif isinstance(node, ast.Assign):
                top_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                top_names.add(node.target.id)
            elif isinstance(node, ast.ImportFrom):
                top_names |= {a.asname or a.name for a in node.names}
        assert name in top_names, (name, module)
