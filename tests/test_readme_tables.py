"""The README's generated tables equal what the code produces now."""
from pathlib import Path

import pytest
from script_loader import load_script

from csc_analyzers.methods_table import CONVENTIONS, methods_markdown
from csc_analyzers.registry import ALL_METHODS

ROOT = Path(__file__).resolve().parents[1]


def _script():
    return load_script("update_readme_tables")


def test_readme_tables_are_generated_from_the_code():
    documents = _script().rendered_documents(ROOT)
    assert {path.relative_to(ROOT).as_posix() for path in documents} == \
        {"README.md", "docs/innvestigate.md"}
    for path, (text, new) in documents.items():
        assert new == text, f"{path}: run python scripts/update_readme_tables.py"


def test_methods_table_has_one_row_per_registered_method():
    rows = methods_markdown().strip().splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == \
        [spec.name for spec in ALL_METHODS]
    assert {spec.analyzer for spec in ALL_METHODS} <= set(CONVENTIONS)


def test_render_replaces_only_marked_tables_and_names_bad_markers():
    script = _script()
    text = ("intro\n<!-- BEGIN GENERATED: t -->\nold\n<!-- END GENERATED: t -->\nend\n")
    assert script.render(text, {"t": "new\n"}) == (
        "intro\n<!-- BEGIN GENERATED: t -->\nnew\n<!-- END GENERATED: t -->\nend\n")
    with pytest.raises(ValueError, match="'t' that the code does not produce"):
        script.render(text, {"u": "x\n"})
    with pytest.raises(ValueError, match=r"no markers for the generated tables \['u'\]"):
        script.render(text, {"t": "x\n", "u": "y\n"})
