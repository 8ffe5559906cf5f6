"""The README's Python example runs as written, on a model and images saved
the way a user would have them, and prints a CSC in [0, 1]."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKE_FILES = """
import numpy as np
from tensorflow import keras
rng = np.random.default_rng(0)
inp = keras.Input((16, 16, 3))
h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
h = keras.layers.MaxPooling2D(name="pool")(h)
h = keras.layers.Flatten(name="flat")(h)
h = keras.layers.Dense(16, activation="relu", name="fc")(h)
out = keras.layers.Dense(4, name="logits")(h)
keras.Model(inp, out).save("my_model.keras")
np.save("my_images.npy", rng.uniform(size=(3, 16, 16, 3)).astype("float32"))
"""


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- tests/test_readme_example.py runs this block -->\n```python\n"
                      r"(.*?)```", text, flags=re.S)
    assert match, "README has no marked Python example"
    return match.group(1)


def test_readme_example_runs_and_prints_a_csc(tmp_path):
    code = _example()
    assert len(code.strip().splitlines()) <= 12
    subprocess.run([sys.executable, "-c", MAKE_FILES], cwd=tmp_path, check=True,
                   capture_output=True)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    value = float(done.stdout.strip().splitlines()[-1])
    assert 0.0 <= value <= 1.0
