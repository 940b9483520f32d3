"""Every function in src/ is 60 lines or fewer (ruff has no such rule): a function longer than a
screen stops reading as one step of the recipe."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

LIMIT = 60


def long_functions(root: Path) -> list[str]:
    """`path:line name (N lines)` of each function or method under `root` longer than LIMIT, its
    decorators and docstring included."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > LIMIT:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_every_function_in_src_is_at_most_60_lines():
    assert long_functions(REPO / "src") == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT - 1))  # with the decorator and def: LIMIT + 1
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\n@staticmethod\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == [f"m.py:6 long ({LIMIT + 1} lines)"]
