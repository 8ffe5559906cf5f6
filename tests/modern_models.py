"""Modern Keras models for the layer-support tests and the model x method table:
keras.applications networks (random weights, small inputs) and tutorial-style
models (Rescaling(1/255), LeakyReLU, nested Sequential, LayerNormalization,
default layer names).

:func:`method_row` runs one registry method on one model the way a user
would (the checks, then ``create_analyzer`` and ``analyze``) and reports
"runs", "refused" (with the checks' reason) or "failed", and for LRP-z the
relative error against gradient x input, for DeepLIFT the relative error of
summation-to-delta.
"""
import time

import numpy as np

import csc_analyzers
from csc_analyzers import checks
from csc_analyzers.errors import InputError
from tensorflow import keras
from tensorflow.keras import layers as klayers

#: name -> (constructor kwargs, input size, input range)
APPLICATIONS = {
    "MobileNetV2": ({"alpha": 0.35}, 32, (-1.0, 1.0)),
    "EfficientNetB0": ({}, 32, (0.0, 255.0)),
    "Xception": ({}, 71, (-1.0, 1.0)),
    "ResNet50V2": ({}, 32, (-1.0, 1.0)),
    "DenseNet121": ({}, 32, (-1.0, 1.0)),
}


def application(name, classes=10, *, calibrate=True, seed=0):
    """The application with random weights; with ``calibrate``, every
    BatchNormalization's moving statistics are set to those of its input on
    8 random images (:func:`calibrate_batchnorm`): with Keras's initial
    statistics (mean 0, variance 1) the signal of a deep random network
    shrinks or grows with depth (MobileNetV2's logits are ~1e-12), which
    makes every identity check meaningless."""
    kwargs, size, input_range = APPLICATIONS[name]
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), classes=classes,
        classifier_activation=None, **kwargs)
    if calibrate:
        calibrate_batchnorm(model, input_batch(model, input_range, n=8, seed=seed + 1))
    return model


def calibrate_batchnorm(model, x):
    """Set the moving mean and variance of every BatchNormalization layer of
    ``model`` (in layer order) to the statistics of its input for ``x``."""
    for layer in model.layers:
        if isinstance(layer, klayers.BatchNormalization):
            values = keras.Model(model.inputs, layer.input).predict(x, verbose=0)
            axes = tuple(range(values.ndim - 1))
            weights = layer.get_weights()
            weights[-2] = values.mean(axis=axes)
            weights[-1] = values.var(axis=axes) + 1e-3
            layer.set_weights(weights)


def tutorial_rescaling(seed=0):
    """The Keras image-classification tutorial's CNN (default names)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)), klayers.Rescaling(1.0 / 255),
        klayers.Conv2D(8, 3, padding="same", activation="relu"), klayers.MaxPooling2D(),
        klayers.Conv2D(8, 3, padding="same", activation="relu"), klayers.MaxPooling2D(),
        klayers.Flatten(), klayers.Dense(16, activation="relu"), klayers.Dense(5)])


def tutorial_leaky(seed=0):
    """A DCGAN-style discriminator: strided convolutions, LeakyReLU, Dropout."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        klayers.Conv2D(8, 3, strides=2, padding="same"), klayers.LeakyReLU(0.2),
        klayers.Dropout(0.3),
        klayers.Conv2D(16, 3, strides=2, padding="same"), klayers.LeakyReLU(0.2),
        klayers.Flatten(), klayers.Dense(3)])


def tutorial_nested(seed=0):
    """Augmentation and feature extractor as nested Sequential models inside a
    functional model (transfer-learning tutorial layout)."""
    keras.utils.set_random_seed(seed)
    augment = keras.Sequential([klayers.RandomFlip("horizontal"),
                                klayers.RandomRotation(0.1)])
    features = keras.Sequential([
        klayers.Conv2D(8, 3, activation="relu"), klayers.BatchNormalization(),
        klayers.Conv2D(8, 3, activation="relu"), klayers.GlobalAveragePooling2D()])
    inp = keras.Input((16, 16, 3))
    h = klayers.Rescaling(1.0 / 127.5, offset=-1)(augment(inp))
    return keras.Model(inp, klayers.Dense(4)(klayers.Dropout(0.2)(features(h))))


def tutorial_layernorm(seed=0):
    """A small CNN with LayerNormalization (refused by the rule-based family)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)), klayers.Conv2D(8, 3, activation="relu"),
        klayers.LayerNormalization(), klayers.Conv2D(8, 3, activation="relu"),
        klayers.LayerNormalization(), klayers.GlobalAveragePooling2D(), klayers.Dense(3)])


TUTORIALS = {
    "tutorial Rescaling": (tutorial_rescaling, (0.0, 255.0)),
    "tutorial LeakyReLU": (tutorial_leaky, (-1.0, 1.0)),
    "tutorial nested": (tutorial_nested, (0.0, 255.0)),
    "tutorial LayerNorm": (tutorial_layernorm, (-1.0, 1.0)),
}


def _relative(error, scale):
    return float(error) / max(float(scale), 1e-12)


def method_row(spec, model, x, input_range, *, fast=True):
    """``dict(status, detail, error, seconds)`` for registry method ``spec`` on
    ``model`` and the batch ``x``. ``fast`` lowers SmoothGrad's samples to 4
    (the layers it needs are those of 50)."""
    start = time.perf_counter()
    try:
        checks.check_layers(model, [spec])
        checks.check_activations(model, [spec])
    except InputError as error:
        return dict(status="refused", detail=str(error), error=None,
                    seconds=time.perf_counter() - start)
    if spec.needs_patterns:
        return dict(status="not run", detail="needs patterns estimated on data", error=None,
                    seconds=0.0)
    kwargs = spec.analyzer_kwargs(input_range)
    if fast and "augment_by_n" in kwargs:
        kwargs["augment_by_n"] = 4
    try:
        analyzer = csc_analyzers.create_analyzer(spec.analyzer, model,
                                                 neuron_selection_mode="index", **kwargs)
        maps = np.asarray(analyzer.analyze(x, neuron_selection=0))
    except Exception as error:  # reported in the table
        return dict(status="failed", detail=f"{type(error).__name__}: {str(error)[:300]}",
                    error=None, seconds=time.perf_counter() - start)
    row = dict(status="runs" if np.isfinite(maps).all() else "non-finite", detail="",
               error=None, seconds=time.perf_counter() - start, maps=maps)
    if spec.analyzer == "lrp.z":
        gradient = csc_analyzers.create_analyzer("gradient", model,
                                                 neuron_selection_mode="index")
        reference = np.asarray(gradient.analyze(x, neuron_selection=0)) * x
        row["error"] = ("LRP-z vs grad x input", _relative(
            np.abs(maps - reference).max(), np.abs(reference).max()))
    if spec.analyzer == "deep_lift.wrapper":
        logits = model.predict(np.concatenate([x, np.zeros_like(x[:1])]), verbose=0)[:, 0]
        delta = logits[:-1] - logits[-1]
        sums = maps.reshape(len(x), -1).sum(1)
        row["error"] = ("sum - (f(x) - f(0))", _relative(
            np.abs(sums - delta).max(), np.abs(delta).max()))
    return row


def input_batch(model, input_range, n=1, seed=0):
    low, high = input_range
    shape = (n,) + tuple(int(d) for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def table_rows(name, timed=None):
    """Rows (dicts) of the model x method table for application or tutorial
    ``name``: every registry method checked; those accepted and named in
    ``timed`` (default: all) run, each in a fresh graph with the same weights."""
    from csc_analyzers.registry import ALL_METHODS

    if name in APPLICATIONS:
        keras.utils.set_random_seed(0)
        model, input_range = application(name), APPLICATIONS[name][2]
        weights = model.get_weights()

        def build():
            keras.backend.clear_session()
            fresh = application(name, calibrate=False)
            fresh.set_weights(weights)
            return fresh
    else:
        make, input_range = TUTORIALS[name]
        model = make()

        def build():
            return model
    rows = []
    for spec in ALL_METHODS:
        if timed is not None and spec.name not in timed:
            try:
                checks.check_layers(model, [spec])
                checks.check_activations(model, [spec])
                rows.append(dict(model=name, method=spec.name, status="accepted, not run",
                                 detail="", error=None, seconds=0.0))
            except InputError as error:
                rows.append(dict(model=name, method=spec.name, status="refused",
                                 detail=str(error), error=None, seconds=0.0))
            continue
        current = build()
        row = method_row(spec, current, input_batch(current, input_range), input_range)
        row.pop("maps", None)
        rows.append(dict(model=name, method=spec.name, **row))
    return rows


if __name__ == "__main__":  # python tests/modern_models.py MODEL ["method,method"]
    import json
    import sys

    chosen = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    for entry in table_rows(sys.argv[1], chosen):
        print(json.dumps(entry), flush=True)
