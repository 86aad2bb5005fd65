"""Code fingerprints of workflow steps: a hash over the source of every module a step runs.

A step's results must be recomputed when, and only when, code it actually runs changes. So the
fingerprint covers the step's module plus the package modules it imports, transitively (its
*import closure*), and ignores comments, docstrings and formatting. The closure is read from
the source with `ast` rather than by importing: importing the steps pulls in torch & co.
(seconds), and this runs at every workflow start, so it has to take milliseconds.

Imports are followed wherever they appear (the package imports heavy libraries lazily inside
functions, and may do the same with its own modules). Imports of other packages are ignored;
so are dynamic imports (`importlib.import_module`), which `ast` cannot resolve.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class _Import:
    """One import as written: `import base` (names empty) or `from base import names`."""

    level: int  # leading dots of a relative import; 0 for an absolute one
    base: str | None  # None for `from . import x`
    names: tuple[str, ...]
    is_from: bool


@dataclass(frozen=True)
class _Parsed:
    normalized: str
    imports: tuple[_Import, ...]


def import_closure(module: str) -> list[str]:
    """Sorted names of the package modules `module` runs when imported, itself included."""
    return sorted(_closure(module))


def normalized_source(module: str) -> str:
    """The module's code without comments, docstrings or formatting, which change no behaviour."""
    return _parse_module(module).normalized


def code_fingerprint(module: str) -> str:
    """16 hex digits that change exactly when code in the import closure of `module` changes."""
    # JSON keeps (name, source) pairs unambiguous: no concatenation of two can mimic another.
    closure = _closure(module)
    pairs = [[name, closure[name].normalized] for name in sorted(closure)]
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def _closure(module: str) -> dict[str, _Parsed]:
    """Each module of the import closure with its parse, each file read once."""
    found = {module: _parse_module(module)}  # raises if the module itself has no source
    todo = [*_parents(module), *_imported_by(module, found[module])]
    while todo:
        name = todo.pop()
        if name not in found and _source_path(name) is not None:
            found[name] = _parse_module(name)
            todo.extend(_imported_by(name, found[name]))
    return found


def _parse_module(module: str) -> _Parsed:
    path = _source_path(module)
    if path is None:
        raise ValueError(f"no source file for module {module!r}")
    # Read on every call (cheap) so an edit is never masked; only parsing is cached, by content.
    return _parse(str(path), path.read_text(encoding="utf-8"))


@cache
def _parse(path: str, source: str) -> _Parsed:
    """Parse once per distinct source text: the steps of a workflow share most modules."""
    tree = ast.parse(source, filename=path)
    imports = []
    # One walk does both jobs: finding imports anywhere (top level or nested in functions,
    # classes and branches) and dropping docstrings.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            imports += _imports_of(node)
        elif isinstance(node, DOCUMENTED) and node.body and _is_docstring(node.body[0]):
            # A def or class needs a body; a module may be empty.
            node.body = node.body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])
    return _Parsed(ast.unparse(tree), tuple(imports))


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _imports_of(node: ast.Import | ast.ImportFrom) -> list[_Import]:
    if isinstance(node, ast.Import):
        return [_Import(0, alias.name, (), False) for alias in node.names]
    return [_Import(node.level, node.module, tuple(alias.name for alias in node.names), True)]


def _imported_by(module: str, parsed: _Parsed) -> set[str]:
    """The package modules that the imports in `module` execute."""
    root = _root(module)
    targets: set[str] = set()
    for imp in parsed.imports:
        base = _absolute(imp, module)
        if base is None or _root(base) != root:
            continue  # another package, or a relative import above the top level
        targets |= _targets_of(imp, base)
    return {parent for name in targets for parent in (name, *_parents(name))}


def _targets_of(imp: _Import, base: str) -> set[str]:
    """The modules an import names: `from base import x` means base.x if that is a module."""
    if not imp.is_from:
        return {base}
    targets = set()
    for name in imp.names:
        sub = f"{base}.{name}"
        if name != "*" and _source_path(sub) is not None:
            targets.add(sub)
        else:
            targets.add(base)  # an attribute of base, so base's own code runs
    return targets


def _absolute(imp: _Import, importer: str) -> str | None:
    """The absolute name of an import's base module, resolving leading dots against `importer`."""
    if imp.level == 0:
        return imp.base
    # Dots count from the importer's package: the importer itself if it is an __init__.py.
    package = importer if _is_package(importer) else importer.rpartition(".")[0]
    parts = package.split(".")
    if imp.level - 1 >= len(parts):
        return None
    anchor = ".".join(parts[: len(parts) - (imp.level - 1)])
    return f"{anchor}.{imp.base}" if imp.base else anchor


def _parents(module: str) -> list[str]:
    """Enclosing packages below the top level, whose __init__ runs when `module` is imported.

    The top-level package's __init__ is left out: it runs for every module of the package
    alike, and counts only when imported from explicitly (`from pkg import __version__`).
    """
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _root(module: str) -> str:
    return module.partition(".")[0]


def _is_package(module: str) -> bool:
    path = _source_path(module)
    return path is not None and path.name == "__init__.py"


def _source_path(module: str) -> Path | None:
    """The .py file of a module of its top-level package, found by path, without importing it.

    Not cached: a module created or deleted mid-process must be seen (it is a stat or two).
    """
    root, _, rest = module.partition(".")
    parts = rest.split(".") if rest else []
    if not all(part.isidentifier() for part in (root, *parts)):
        return None
    for directory in _package_dirs(root):
        # A package shadows a same-named module, as in Python's own finder.
        candidates = [directory.joinpath(*parts, "__init__.py")]
        if parts:
            candidates.append(directory.joinpath(*parts[:-1], f"{parts[-1]}.py"))
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    return None


@cache
def _package_dirs(root: str) -> tuple[Path, ...]:
    """Directories of a top-level package; `find_spec` on a top-level name imports nothing."""
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(Path(location) for location in spec.submodule_search_locations)
