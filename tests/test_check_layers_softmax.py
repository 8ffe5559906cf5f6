"""A softmax on the output is stripped before any analysis, so the layer
check accepts it; a softmax inside the network still blocks the rules."""
import pytest
from tensorflow import keras

from csc_analyzers.checks import check_layers
from csc_analyzers.registry import get_method
from csc_analyzers.errors import UnsupportedLayerError

SPECS = [get_method("LRP a1b0"), get_method("Gradient")]


def _model(inner_softmax: bool):
    x = keras.Input((6,))
    h = keras.layers.Dense(4, name="hidden")(x)
    if inner_softmax:
        h = keras.layers.Activation("softmax", name="inner_softmax")(h)
    h = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(x, keras.layers.Activation("softmax", name="softmax")(h))


def test_output_softmax_is_accepted():
    check_layers(_model(inner_softmax=False), SPECS)


def test_inner_softmax_blocks_the_rules_only():
    with pytest.raises(UnsupportedLayerError) as error:
        check_layers(_model(inner_softmax=True), SPECS)
    text = str(error.value)
    assert "'inner_softmax'" in text and "[blocks LRP a1b0]" in text
    assert "'softmax' (" not in text
