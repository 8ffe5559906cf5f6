"""Regenerate the README's generated tables from the code.

The README and docs/innvestigate.md mark each generated table with
``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->``; this
script replaces what lies between the markers with the table the code
produces now (:func:`tables`; :data:`DOCUMENTS` says which document holds
which table). ``tests/test_readme_tables.py`` fails when a document and the
code differ.

Usage: python scripts/update_readme_tables.py [--check]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DOCUMENTS = {
    "README.md": ("methods", "layers", "scripts"),
    "docs/innvestigate.md": ("deviations",),
}


def scripts_markdown(directory: Path = ROOT / "scripts") -> str:
    """One row per script: its name and the first line of its docstring."""
    import ast

    lines = ["| script | what it does |", "|---|---|"]
    for path in sorted(directory.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not doc:
            raise ValueError(f"{path}: a script without a docstring")
        first = " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")
        lines.append(f"| `scripts/{path.name}` | {first} |")
    return "\n".join(lines) + "\n"


def grouped_rows(markdown: str) -> str:
    """``markdown`` (text, then one table whose first column names a row)
    with the rows whose other cells are all equal merged into one row, their
    names joined, in the order of first appearance."""
    lines = markdown.rstrip("\n").split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    header, rule, rows = lines[start], lines[start + 1], lines[start + 2:]
    groups: dict = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        groups.setdefault(tuple(cells[1:]), []).append(cells[0])
    merged = [f"| {', '.join(names)} | {' | '.join(rest)} |" for rest, names in groups.items()]
    return "\n".join(lines[:start] + [header, rule] + merged) + "\n"


def tables() -> dict:
    """NAME -> markdown of every generated README table."""
    from csc_analyzers.deviations import deviations_markdown
    from csc_analyzers.methods_table import methods_markdown
    from residual_support.layers import support_table_markdown

    return {name: text if text.endswith("\n") else text + "\n" for name, text in {
        "methods": methods_markdown(), "layers": grouped_rows(support_table_markdown()),
        "deviations": deviations_markdown(), "scripts": scripts_markdown()}.items()}


def render(text: str, generated: dict) -> str:
    """``text`` with every marked table replaced by ``generated[NAME]``;
    ValueError naming a marker without its table or a table without markers."""
    seen = set()

    def replace(match):
        name = match.group(1)
        if name not in generated:
            raise ValueError(f"the document marks a generated table {name!r} that the code "
                             f"does not produce (known: {sorted(generated)})")
        seen.add(name)
        return f"<!-- BEGIN GENERATED: {name} -->\n{generated[name]}<!-- END GENERATED: {name} -->"

    out = re.sub(r"<!-- BEGIN GENERATED: ([\w-]+) -->\n.*?<!-- END GENERATED: \1 -->",
                 replace, text, flags=re.S)
    missing = set(generated) - seen
    if missing:
        raise ValueError(f"the document has no markers for the generated tables "
                         f"{sorted(missing)}")
    return out


def rendered_documents(root: Path = ROOT) -> dict:
    """path -> (current text, text with its generated tables regenerated)
    for every document of :data:`DOCUMENTS`."""
    generated = tables()
    out = {}
    for name, table_names in DOCUMENTS.items():
        path = root / name
        text = path.read_text()
        out[path] = (text, render(text, {t: generated[t] for t in table_names}))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a document differs from the code, write nothing")
    args = parser.parse_args(argv)
    stale = 0
    for path, (text, new) in rendered_documents().items():
        if new == text:
            continue
        if args.check:
            print(f"{path}: generated tables are out of date; run "
                  "python scripts/update_readme_tables.py", file=sys.stderr)
            stale = 1
        else:
            path.write_text(new)
            print(f"updated {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
