"""The package's imports only point down, and none of them forms a cycle.

Every ``import``/``from ... import`` in ``src/xcodec`` counts, at module level or inside a
function (a lazy import is still a dependency), and so does ``importlib.import_module``
with a literal name; only imports under ``if TYPE_CHECKING:`` are left out (they never
run). Importing ``a.b.c`` implicitly runs ``a/__init__`` and ``a/b/__init__``; those
implicit edges are not counted (every module would otherwise depend on the package root).

Layers, bottom to top (a module may import its own rank or lower, never higher):

0. ``errors``, ``configs/``, ``registry``: exceptions, typed dataclass configs, and the
   table where the I/O layer plugs its loaders in (names only, imported on use).
1. The data path and the interface it implements: ``base`` (the codec interface, its
   ``from_pretrained`` through the registry), ``audio``, ``fbank`` (the Kaldi filterbank
   math), ``features`` (padding rules, extractors), ``windowing`` (the plan and stitch
   math of long-audio windows), ``metrics/`` (the stream-state mechanism is ``ops/streaming``). Inside the model's data path, three sub-ranks:

   - 1 ``ops/``: runtime helpers (lengths and masks of padded batches, chunking, layout);
   - 1.2 ``layers/``: building blocks (Snake, anti-aliasing, FSQ, RVQ, transformer, ISTFT);
   - 1.4 ``stages/`` and ``semantic/``: codec stages (BigCodec, DAC, Vocos, the semantic
     adapter) and the semantic encoders, assembled from blocks.
2. ``models/``: assemble the data path into codecs; no I/O. ``runtime`` (options that set
   how the models' modules compute). ``streaming`` (the decoder streamers: they read the
   models' decoder parts, so they sit on the models' rank).
3. ``checkpoints/`` (all I/O: hub resolution, safetensors, key maps, weight-norm folding)
   and ``placement`` (reads a checkpoint's ``config.json`` for ``dtype="auto"``).
4. ``api``, ``auto``: the simple API and checkpoint dispatch.
5. Applications: ``cli``, ``dataset/``, ``train/``, ``onnx/``, evaluation, the package root
   (``xcodec/__init__`` re-exports everything), and any new top-level module or package
   not named in the table.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "xcodec"

# First component under xcodec -> rank; a full dotted name overrides its package's rank.
RANKS: dict[str, float] = {
    "errors": 0,
    "configs": 0,
    "registry": 0,
    "base": 1,
    "audio": 1,
    "features": 1,
    "fbank": 1,
    "ops": 1,
    "layers": 1.2,
    "stages": 1.4,
    "semantic": 1.4,
    "windowing": 1,
    "metrics": 1,
    "streaming": 2,
    "models": 2,
    "runtime": 2,
    "checkpoints": 3,
    "placement": 3,
    "api": 4,
    "auto": 4,
}
TOP_RANK = 5  # cli, dataset, train, onnx, evaluation, the package root, anything new


def rank_of(module: str) -> float:
    """Rank of a dotted module name under ``xcodec`` (see the module docstring)."""
    parts = module.split(".")
    if parts == [PACKAGE]:
        return TOP_RANK
    if module in RANKS:
        return RANKS[module]
    return RANKS.get(parts[1], TOP_RANK)


def package_modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted name -> file of every module of the package under ``root`` (``pkg/__init__.py`` is ``pkg``)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    """Names imported by one module, with their line numbers (TYPE_CHECKING blocks skipped)."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module = module
        self.is_package = is_package
        self.known = known
        self.found: list[tuple[str, int]] = []

    def _add(self, name: str, line: int) -> None:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            self.found.append((name, line))

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            # Relative: resolve against this module's package.
            package = self.module.split(".")
            if not self.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            # ``from a.b import c`` imports the module a.b.c when there is one.
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(first.value, node.lineno)
        self.generic_visit(node)


def import_graph(root: Path = SRC) -> dict[str, dict[str, int]]:
    """module -> {imported package module: first line}, for every module of the package."""
    modules = package_modules(root)
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        collector = _ImportCollector(module, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges: dict[str, int] = {}
        for target, line in collector.found:
            # An attribute import of a module that is not a file (``from xcodec import load``)
            # depends on the package itself.
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """``a:line -> b`` for each import of a higher-ranked module."""
    return [
        f"{module}:{line} -> {target} (rank {rank_of(module)} imports rank {rank_of(target)})"
        for module, edges in sorted(graph.items())
        for target, line in sorted(edges.items())
        if rank_of(target) > rank_of(module)
    ]


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def test_no_upward_imports() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = import_cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        edges = [
            f"  {module}:{line} -> {target}"
            for module in component
            for target, line in sorted(graph[module].items())
            if target in members
        ]
        lines.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert not cycles, "import cycles:\n" + "\n".join(lines)


# ---------------------------------------------------------------- the checker can fail
def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    for name, text in files.items():
        path = tmp_path / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return import_graph(tmp_path)


def test_checker_finds_lazy_upward_import_and_cycle(tmp_path: Path) -> None:
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "models/__init__.py": "",
            "models/codec.py": "def load():\n    from xcodec.checkpoints.codec import read\n",
            "checkpoints/__init__.py": "",
            "checkpoints/codec.py": "from ..models.codec import load\n",
            "layers/__init__.py": "",
            "layers/block.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from xcodec.models.codec import load\n"
                "import importlib\nimportlib.import_module('xcodec.api')\n"
            ),
            "api.py": "",
            "ops/__init__.py": "",
            "ops/helper.py": "def f():\n    from xcodec.stages import vocos\n",
            "stages/__init__.py": "",
            "stages/vocos.py": "",
        },
    )
    upward = upward_imports(graph)
    assert upward == [
        "xcodec.layers.block:5 -> xcodec.api (rank 1.2 imports rank 4)",
        "xcodec.models.codec:2 -> xcodec.checkpoints.codec (rank 2 imports rank 3)",
        "xcodec.ops.helper:2 -> xcodec.stages.vocos (rank 1 imports rank 1.4)",
    ]
    assert import_cycles(graph) == [["xcodec.checkpoints.codec", "xcodec.models.codec"]]


def test_checker_accepts_downward_imports(tmp_path: Path) -> None:
    graph = _graph_of(
        tmp_path,
        {
            "__init__.py": "from xcodec.api import load\n",
            "api.py": "from xcodec import models\nfrom xcodec.models.codec import Codec\n",
            "models/__init__.py": "",
            "models/codec.py": "from xcodec.errors import XcodecError\n",
            "errors.py": "",
        },
    )
    assert graph["xcodec.api"] == {"xcodec.models": 1, "xcodec.models.codec": 2}
    assert upward_imports(graph) == []
    assert import_cycles(graph) == []
