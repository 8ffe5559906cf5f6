"""scripts/mutation_check.py: its list stays applicable to the code, and a
mutation the tests do not notice is reported and fails the run."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("mutation_check",
                                                  ROOT / "scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_mutation_applies_once_and_names_existing_tests():
    script = load_script()
    assert len(script.MUTATIONS) >= 12
    script.check(script.MUTATIONS)  # raises SystemExit if a snippet is not found exactly once
    for mutation in script.MUTATIONS:
        for test in mutation.tests:
            assert (ROOT / test.split("::")[0]).is_file(), (mutation.name, test)


def test_a_surviving_mutation_fails_the_run(capsys):
    """A change the named test cannot see (a comment) survives: exit status 1."""
    script = load_script()
    script.MUTATIONS[:] = [script.Mutation(
        "comment_only", "csc_analyzers/metrics/bootstrap.py",
        '"""Median over images', '"""The median over images',
        ("tests/test_mutation_check.py::test_every_mutation_applies_once_and_names_existing_tests",),
        "none")]
    assert script.main(["--only", "comment_only"]) == 1
    out = capsys.readouterr().out
    assert "SURVIVED comment_only" in out and "0 of 1 mutations caught" in out
    with pytest.raises(SystemExit):
        script.main(["--only", "no_such_mutation"])
