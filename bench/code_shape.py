"""The shape of the code, for the closing note of a redesign: product lines, lines per kind
path, functions over 40 lines, modules over 300 lines (the parser's help text aside).

Run from a checkout: ``python bench/code_shape.py [ROOT]`` (ROOT: a checkout, default this
one). Prints one line per figure; reads files, writes nothing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FUNCTION_LIMIT = 40
MODULE_LIMIT = 300
# The modules only one kind's path uses (by file stem, wherever io/ puts them).
SYMMETRIC = {
    "distribute",
    "drift",
    "inspect",
    "bootstrap",
    "local",
    "preview",
    "fleet",
    "policy",
    "nodeplan",
    "repository",
}
JWS = {
    "jws",
    "jwsdrift",
    "jwsload",
    "jwsread",
    "jwsfleet",
    "jwsstore",
    "jwsplan",
    "jwskeys",
}
HELP_TEXT = {"parser.py", "docs.py"}  # argparse help and the printed docs are text, not code


def product(root: Path) -> list[Path]:
    """Return keysyncd's product modules (the test tooling in keysyncd/testing aside)."""
    package = root / "keysyncd"
    return sorted(p for p in package.rglob("*.py") if "testing" not in p.relative_to(package).parts)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.name}:{node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > FUNCTION_LIMIT
    ]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    files = product(root)
    print(f"product lines: {sum(lines(p) for p in files)} in {len(files)} modules")
    for name, stems in (("symmetric", SYMMETRIC), ("jws", JWS)):
        print(f"{name} path lines: {sum(lines(p) for p in files if p.stem in stems)}")
    long = [f for p in files for f in long_functions(p)]
    print(f"functions over {FUNCTION_LIMIT} lines: {len(long)} {long}")
    big = [
        f"{p.name}:{lines(p)}" for p in files if lines(p) > MODULE_LIMIT and p.name not in HELP_TEXT
    ]
    print(f"modules over {MODULE_LIMIT} lines: {len(big)} {big}")


if __name__ == "__main__":
    main()
