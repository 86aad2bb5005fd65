"""Code fingerprints: they follow a step's import closure and ignore comments, docs and layout."""

from __future__ import annotations

import importlib
import re
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from elasticity.fingerprint import code_fingerprint, import_closure, normalized_source

# A throwaway package. Each step reaches its package modules by a different import form.
FILES = {
    "__init__.py": '__version__ = "1.0"\n',
    "shared.py": """\
        '''Used by steps a, c and d.'''

        def helper(x):
            return x + 1
        """,
    "extra.py": "VALUE = 2\n",
    "lazy.py": "LAZY = 3\n",
    "alone.py": "ALONE = 4\n",
    "sub/__init__.py": "",
    "sub/deep.py": """\
        from ..extra import VALUE

        THING = VALUE
        """,
    "sub/leaf.py": "LEAF = 5\n",
    # Top level `import PKG.x`, and `from PKG import x` inside a function.
    "step_a.py": """\
        import os

        import PKG.shared


        def run():
            from PKG import lazy

            return PKG.shared.helper(lazy.LAZY) + len(os.sep)
        """,
    # `from PKG.x import name`, and a name of the package's __init__.
    "step_b.py": """\
        from PKG import __version__
        from PKG.extra import VALUE


        def run():
            return VALUE, __version__
        """,
    # Relative imports, one through a subpackage whose module imports relatively in turn.
    "step_c.py": """\
        from . import shared
        from .sub.deep import THING


        def run():
            return shared.helper(THING)
        """,
    # `import PKG.x as y`, `from PKG.sub import module`, other packages (ignored).
    "step_d.py": """\
        import json
        from collections import OrderedDict

        import PKG.shared as s
        from PKG.sub import leaf


        class Step:
            def run(self):
                return s.helper(leaf.LEAF), json, OrderedDict
        """,
}
STEPS = ("step_a", "step_b", "step_c", "step_d")


class Package:
    """The throwaway package on disk, under a fresh name so no cache can recognise it."""

    def __init__(self, root: Path):
        self.name = f"fp_pkg_{uuid.uuid4().hex}"
        self.dir = root / self.name
        for rel, text in FILES.items():
            self.write(rel, text)

    def write(self, rel: str, text: str) -> None:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).replace("PKG", self.name))

    def edit(self, rel: str, change: Callable[[str], str]) -> None:
        path = self.dir / rel
        old = path.read_text()
        new = change(old)
        assert new != old, "the edit under test must change the file"
        path.write_text(new)

    def mod(self, short: str) -> str:
        return self.name if short == "" else f"{self.name}.{short}"

    def closure(self, step: str) -> list[str]:
        return [name.removeprefix(self.name).lstrip(".") for name in import_closure(self.mod(step))]

    def fingerprints(self) -> dict[str, str]:
        return {step: code_fingerprint(self.mod(step)) for step in STEPS}


@pytest.fixture
def pkg(tmp_path, monkeypatch) -> Package:
    package = Package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return package


def test_closure_follows_every_import_form(pkg):
    # "" is the package's __init__: only step_b imports from it explicitly.
    assert pkg.closure("step_a") == ["lazy", "shared", "step_a"]
    assert pkg.closure("step_b") == ["", "extra", "step_b"]
    assert pkg.closure("step_c") == ["extra", "shared", "step_c", "sub", "sub.deep"]
    assert pkg.closure("step_d") == ["shared", "step_d", "sub", "sub.leaf"]


def test_module_without_source_is_an_error(pkg):
    with pytest.raises(ValueError, match="missing"):
        code_fingerprint(pkg.mod("missing"))
    with pytest.raises(ValueError, match="no_such_package_here"):
        import_closure("no_such_package_here.step")


def test_edit_outside_the_closure_changes_nothing(pkg):
    before = pkg.fingerprints()
    pkg.edit("alone.py", lambda text: text.replace("4", "40"))
    pkg.edit("lazy.py", lambda text: text.replace("3", "30"))  # only step_a imports it
    after = pkg.fingerprints()
    assert after["step_a"] != before["step_a"]
    assert {k: v for k, v in after.items() if k != "step_a"} == {
        k: v for k, v in before.items() if k != "step_a"}


@pytest.mark.parametrize("change", [
    pytest.param(lambda t: t.replace("return x + 1", "return x + 1  # off by one?"),
                 id="comment"),
    pytest.param(lambda t: "# a header comment\n" + t, id="comment-line"),
    pytest.param(lambda t: t.replace("Used by steps", "Shared by the steps"), id="module-doc"),
    pytest.param(lambda t: t.replace("(x):\n", "(x):\n    '''Add one.'''\n"), id="function-doc"),
    pytest.param(lambda t: t.replace("return x + 1", "return (x\n            +   1)"),
                 id="layout"),
    pytest.param(lambda t: t.replace("\n\n", "\n\n\n\n"), id="blank-lines"),
])
def test_comments_docstrings_and_layout_change_nothing(pkg, change):
    before, source = pkg.fingerprints(), normalized_source(pkg.mod("shared"))
    pkg.edit("shared.py", change)
    assert normalized_source(pkg.mod("shared")) == source
    assert pkg.fingerprints() == before


def test_docstring_only_bodies_stay_valid(pkg):
    pkg.write("docs.py", '''\
        """Module doc."""


        class Empty:
            """Only a docstring."""


        def nothing():
            """Only a docstring."""
        ''')
    source = normalized_source(pkg.mod("docs"))
    assert "docstring" not in source and "Module doc" not in source
    compile(source, "docs.py", "exec")  # still a valid module
    assert normalized_source(pkg.mod("docs")) == source  # and deterministic


def test_code_edit_changes_exactly_the_steps_that_run_it(pkg):
    before = pkg.fingerprints()
    pkg.edit("shared.py", lambda text: text.replace("x + 1", "x + 2"))
    after = pkg.fingerprints()
    changed = {step for step in STEPS if after[step] != before[step]}
    assert changed == {"step_a", "step_c", "step_d"}


def test_edit_reached_through_a_transitive_relative_import(pkg):
    before = pkg.fingerprints()
    pkg.edit("extra.py", lambda text: text.replace("2", "20"))  # step_c only via sub.deep
    after = pkg.fingerprints()
    assert {step for step in STEPS if after[step] != before[step]} == {"step_b", "step_c"}


def test_init_counts_only_where_imported_from(pkg):
    before = pkg.fingerprints()
    pkg.edit("__init__.py", lambda text: text.replace("1.0", "2.0"))
    after = pkg.fingerprints()
    assert {step for step in STEPS if after[step] != before[step]} == {"step_b"}


def test_new_module_changes_nothing(pkg):
    before = pkg.fingerprints()
    pkg.write("brand_new.py", "from . import shared\n\nNEW = shared.helper(1)\n")
    pkg.write("sub/newer.py", "NEWER = 1\n")
    assert pkg.fingerprints() == before


def test_real_package():
    fingerprint = code_fingerprint("elasticity.generation")
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    closure = import_closure("elasticity.generation")
    assert "elasticity.generation" in closure and "elasticity.models" in closure
    assert "elasticity.runner" not in closure
    assert closure == sorted(closure)
