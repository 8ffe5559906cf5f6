"""Seconds per image of every LRP / DTD / gradient-type method on ResNet-50.

    PYTHONPATH=$PWD python tests/residual_resnet50_timing.py [--methods a,b] [--repeats 2]

keras.applications.ResNet50(weights=None) with random BN statistics, one
224x224 image. For each method: build + first call, then the median of
``repeats`` further calls (seconds per image); checks finite output of the
input's shape. Each method gets a fresh graph.
"""
import argparse
import sys
import time

import numpy as np

import csc_analyzers
from tensorflow import keras

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from residual_nets import randomize_bn  # noqa: E402

METHODS = {
    "gradient": {}, "guided_backprop": {}, "deconvnet": {},
    "smoothgrad": {"augment_by_n": 50, "noise_scale": 0.15 * 255.0},
    "integrated_gradients": {"steps": 64},
    "deep_taylor": {}, "deep_taylor.bounded": {"low": -124.0, "high": 152.0},
    "lrp.z": {}, "lrp.epsilon": {}, "lrp.alpha_1_beta_0": {}, "lrp.alpha_2_beta_1": {},
    "lrp.alpha_beta": {"alpha": 5, "beta": 4}, "lrp.z_plus": {},
}


def resnet50(weights):
    model = keras.applications.ResNet50(weights=None)
    model.set_weights(weights)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    model = keras.applications.ResNet50(weights=None)
    randomize_bn(model, np.random.default_rng(0))
    weights = model.get_weights()
    x = np.random.default_rng(1).uniform(-120, 150, (1, 224, 224, 3)).astype("float32")
    t = time.perf_counter()
    model.predict(x, verbose=0)
    t = time.perf_counter()
    model.predict(x, verbose=0)
    print(f"forward pass: {time.perf_counter() - t:.2f} s", flush=True)
    print(f"{'method':24s} {'build+first s':>14s} {'s/image':>9s}  finite shape", flush=True)
    for name in args.methods.split(","):
        keras.backend.clear_session()
        model = resnet50(weights)
        start = time.perf_counter()
        analyzer = csc_analyzers.create_analyzer(name, model, **METHODS.get(name, {}))
        result = analyzer.analyze(x)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = analyzer.analyze(x)
            times.append(time.perf_counter() - start)
        ok = bool(np.all(np.isfinite(result))) and result.shape == x.shape
        print(f"{name:24s} {first:14.1f} {np.median(times):9.2f}  {ok}", flush=True)


if __name__ == "__main__":
    main()
