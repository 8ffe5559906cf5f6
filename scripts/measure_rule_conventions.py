"""Measure what the alpha-beta bias convention and BN canonization change.

1. CIFAR net (cached builtin weights), built-in test images: relative L2
   ``||map_split - map_shared|| / ||map_shared||`` per image for the
   alpha-beta family (``alpha_beta_bias``), median and range.
2. Small ResNet (tests/residual_nets.py, random weights from a seed): the map
   sum of Excitation BP, z+ and alpha-beta against the value the backward pass
   starts from (1 for Excitation BP, the logit otherwise), with
   ``canonize=False`` (rules through BatchNormalization) and ``canonize=True``
   (BN folded into the convolutions), for both bias conventions.

Usage: python scripts/measure_rule_conventions.py [--images 8] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import csc_analyzers
from csc_analyzers.data import builtin
from csc_analyzers.models.network import load_network

ROOT = Path(__file__).resolve().parents[1]
FAMILY = ["lrp.alpha_1_beta_0", "lrp.alpha_2_beta_1", "lrp.cmp_alpha_1_beta_0",
          "lrp.cmp_alpha_2_beta_1"]
CONSERVING = [("excitation_backprop", {}), ("lrp.z_plus", {}),
              ("lrp.alpha_1_beta_0", {}), ("lrp.alpha_2_beta_1", {})]


def cifar_differences(n_images: int) -> None:
    network = load_network("cifar-net", train_if_missing=False, progress=False)
    images, _labels, _masks = builtin.load("test", n=n_images)
    x = network.preprocess(images.astype("float32"))
    print(f"CIFAR net ({network.weights}), {n_images} built-in test images, top logit")
    for name in FAMILY:
        maps = {c: csc_analyzers.create_analyzer(name, network.model, alpha_beta_bias=c,
                                                 residual_rule="analyzer").analyze(x)
                for c in ("shared", "split")}
        a, b = (maps[c].reshape(len(x), -1).astype(np.float64) for c in ("shared", "split"))
        per_image = np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)
        pooled = np.linalg.norm(b - a) / np.linalg.norm(a)
        print(f"  {name:26s} rel. L2 split vs shared: median {np.median(per_image):.3f} "
              f"min {per_image.min():.3f} max {per_image.max():.3f} "
              f"(all images as one vector: {pooled:.3f})")


def resnet_sums(seeds) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from residual_nets import small_resnet

    print("small ResNet (tests/residual_nets.py), random weights; map sum / start value")
    for seed in seeds:
        model = small_resnet(seed=seed)
        x = np.random.default_rng(100 + seed).normal(size=(1, 12, 12, 3)).astype("float32")
        logits = model.predict(x, verbose=0)[0]
        top = int(np.argmax(logits))
        print(f" seed {seed}: top logit {logits[top]:.4g}")
        for name, kwargs in CONSERVING:
            start = 1.0 if name.startswith("excitation") else float(logits[top])
            row = []
            for canonize in (False, True):
                for convention in ("shared", "split"):
                    analyzer = csc_analyzers.create_analyzer(
                        name, model, canonize=canonize, alpha_beta_bias=convention,
                        residual_rule="analyzer", neuron_selection_mode="index", **kwargs)
                    total = float(np.sum(analyzer.analyze(x, neuron_selection=top),
                                         dtype=np.float64))
                    row.append(f"canonize={canonize!s:5s} {convention:6s} {total / start:+.4g}")
            print(f"  {name:22s} " + " | ".join(row))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2],
                        help="small-ResNet seeds (none: skip the ResNet part)")
    args = parser.parse_args(argv)
    cifar_differences(args.images)
    if args.seeds:
        resnet_sums(args.seeds)


if __name__ == "__main__":
    main()
