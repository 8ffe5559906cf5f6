"""Load a script of ``scripts/`` as a module, for the tests of its parser
and functions; the tables every reproduction writes."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the tidy tables of a reproduction's results directory
REPRODUCE_TABLES = ("csc.csv", "csc_histograms.csv", "sanity_cascading.csv",
                    "random_logit.csv", "class_sensitivity.csv", "theorem1.csv",
                    "theorem1_vgg16.csv", "verdicts.csv")


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
