"""Where does an alpha-beta rule's relevance grow, layer by layer?

For each method and variant (rule through BatchNormalization, BN folded with
``canonize=True``, and the split bias convention ``alpha_beta_bias="split"``)
the script explains the top logit of one input and keeps every relevance
tensor of the backward pass (innvestigate's ``reverse_keep_tensors``). It
prints the map's sum over the logit, the first layer (from the output) whose
relevance has an absolute sum above ``--bound`` times |logit|, and the
relevance's local growth factor split by layer type: for every layer whose
inputs feed that layer only, sum |R(inputs)| / sum |R(output)|; the product
of these factors over all layers of a type says how much of the growth that
type causes (factors of branch points, e.g. a block input that feeds a
convolution and the shortcut, are left out). With each type goes the share
of single-sign units: units whose contributions all have one sign, where
the alpha-beta rule multiplies relevance by alpha (or -beta) instead of
alpha - beta = 1. The factor between consecutive residual-block outputs
(``Add`` outputs) shows the growth per block.

Usage:
  python scripts/measure_relevance_growth.py --network small-resnet --seeds 0 1 2
  python scripts/measure_relevance_growth.py --network resnet50 --methods lrp.alpha_beta
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("lrp.alpha_2_beta_1", "lrp.alpha_5_beta_4")
VARIANTS = {"through BN": {}, "BN folded": {"canonize": True},
            "split bias": {"alpha_beta_bias": "split"}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="small-resnet",
                        choices=("small-resnet", "resnet50", "cifar-net", "vgg16"),
                        help="small-resnet: the test suite's random-weight ResNet "
                             "(tests/residual_nets.py, --seeds); resnet50 / vgg16: random "
                             "weights from --seeds; cifar-net: the cached builtin weights")
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help="analyzer keys; lrp.alpha_5_beta_4 means lrp.alpha_beta with "
                             "alpha 5, beta 4 (default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--no-shares", action="store_true",
                        help="skip the single-sign shares (one forward probe per layer)")
    parser.add_argument("--bound", type=float, default=10.0,
                        help="report the first layer whose |R| sum exceeds bound x |logit|")
    return parser.parse_args(argv)


def build(network: str, seed: int):
    """(model, one input) of ``network`` for ``seed``."""
    import numpy as np

    if network == "small-resnet":
        sys.path.insert(0, str(ROOT / "tests"))
        from residual_nets import small_resnet
        model = small_resnet(seed=seed)
        shape = (1, 12, 12, 3)
    else:
        from csc_analyzers.models.network import load_network
        weights = "builtin" if network == "cifar-net" else None
        net = load_network(network, weights=weights, train_if_missing=False,
                           progress=False, seed=seed)
        model = net.model
        shape = (1,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(100 + seed).normal(size=shape).astype("float32")
    return model, x


def analyzer_for(key: str, model, options: dict):
    import csc_analyzers
    if key == "lrp.alpha_5_beta_4":
        return csc_analyzers.create_analyzer("lrp.alpha_beta", model, alpha=5, beta=4,
                                             reverse_keep_tensors=True, **options)
    return csc_analyzers.create_analyzer(key, model, reverse_keep_tensors=True, **options)


def relevance_by_tensor(analyzer) -> dict:
    """{id(forward tensor of the analysed model): relevance array} of the
    last ``analyze`` call. innvestigate keys each kept tensor by (consumer
    node, input index); nodes past the model's own (the neuron selection)
    and the start value (node -1) are skipped."""
    from innvestigate.backend.graph import get_model_execution_trace

    trace = get_model_execution_trace(analyzer._model, keep_input_layers=False)
    return {id(trace[nid]["Xs"][index]): value
            for (nid, index), value in analyzer._reversed_tensors if 0 <= nid < len(trace)}


def growth_table(analyzer, x, bound: float, shares: bool = True):
    """The relevance growth of one ``analyze`` call: the map's sum over the
    logit, the first layer whose |R| sum passes ``bound`` x |logit|, the
    factor between consecutive residual-block outputs (``Add`` outputs, in
    backward order), and per layer type the product of the local factors
    sum |R(inputs)| / sum |R(output)| over layers whose inputs feed only them,
    with the share of single-sign units in those layers."""
    import numpy as np

    from innvestigate.backend.graph import get_model_execution_trace

    model = analyzer._model  # the analysed model: the BN-folded copy with canonize=True
    logit = float(np.max(model.predict(x, verbose=0)))
    relevance_map = analyzer.analyze(x)
    abs_sum = {k: float(np.sum(np.abs(v), dtype=np.float64))
               for k, v in relevance_by_tensor(analyzer).items()}
    full = get_model_execution_trace(model, keep_input_layers=True)
    consumers = defaultdict(int)
    for node in full:
        for t in node["Xs"]:
            consumers[id(t)] += 1
    per_type = defaultdict(lambda: [1.0, []])  # type -> [product of factors, single-sign shares]
    blocks, first, overflow = [], None, None
    for node in reversed(full):
        layer = node["layer"]
        outs = [abs_sum.get(id(y)) for y in node["Ys"]]
        ins = [abs_sum.get(id(t)) for t in node["Xs"]]
        if type(layer).__name__ == "Add" and outs and outs[0] is not None:
            blocks.append(outs[0])
        if node["nid"] is None or any(v is None for v in outs + ins) or sum(outs) == 0:
            continue
        if not np.isfinite(sum(ins)):
            overflow = overflow or f"{layer.name} ({type(layer).__name__})"
            continue
        if first is None and sum(ins) > bound * abs(logit):
            first = f"{layer.name} ({type(layer).__name__})"
        if all(consumers[id(t)] == 1 for t in node["Xs"]):
            entry = per_type[type(layer).__name__]
            entry[0] *= sum(ins) / sum(outs)
            share = single_sign_share(layer, model, x) if shares else None
            if share is not None:
                entry[1].append(share)
    blocks = [b for b in blocks if np.isfinite(b)]
    ratios = np.array(blocks[1:]) / np.array(blocks[:-1]) if len(blocks) > 1 else np.array([])
    return {"logit": logit,
            "ratio": float(np.sum(relevance_map, dtype=np.float64)) / logit,
            "finite": bool(np.all(np.isfinite(relevance_map))), "first": first,
            "overflow": overflow,
            "blocks": ratios, "per_type": dict(per_type)}


_SHARES: dict = {}


def single_sign_share(layer, model, x):
    """The share of ``layer``'s output units whose contributions z_ij all
    have one sign (or are zero). There the alpha-beta rule multiplies the
    unit's relevance by alpha (or -beta) instead of alpha - beta = 1. Every
    BatchNormalization unit has one contribution, k x, so the share is 1 for
    BN; None for layers without a weighted sum."""
    import numpy as np
    from tensorflow import keras

    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return 1.0
    if kind not in ("Conv2D", "Dense", "Add", "AveragePooling2D", "GlobalAveragePooling2D"):
        return None
    key = (id(model), layer.name, x.tobytes())
    if key not in _SHARES:
        _SHARES[key] = _single_sign_share(layer, kind, model, x)
    return _SHARES[key]


def _single_sign_share(layer, kind, model, x):
    import numpy as np
    from tensorflow import keras

    inputs = layer.input if isinstance(layer.input, list) else [layer.input]
    values = keras.Model(model.inputs, inputs).predict(x, verbose=0)
    values = values if isinstance(values, list) else [values]
    if kind == "Add":
        pos = sum(np.maximum(v, 0) for v in values)
        neg = sum(np.minimum(v, 0) for v in values)
    elif kind in ("Conv2D", "Dense"):
        pos, neg = _split_linear(layer, values[0].astype(np.float64),
                                 layer.get_weights()[0].astype(np.float64))
    else:
        pos = _apply_copy(layer, np.maximum(values[0], 0), None)
        neg = _apply_copy(layer, np.minimum(values[0], 0), None)
    return float(np.mean((pos == 0) | (neg == 0)))


def _apply_copy(layer, values, weights):
    """``values`` through a bias-free, linear copy of ``layer`` with kernel
    ``weights`` (None: a layer without weights)."""
    import numpy as np
    from tensorflow import keras

    config = {**layer.get_config(), "name": layer.name + "_copy"}
    if weights is not None:
        config.update(use_bias=False, activation="linear")
    copy = type(layer).from_config(config)
    inp = keras.Input(values.shape[1:])
    probe = keras.Model(inp, copy(inp))
    if weights is not None:
        copy.set_weights([weights.astype("float32")])
    return probe.predict(values.astype("float32"), verbose=0).astype(np.float64)


def _split_linear(layer, a, kernel):
    """z+ and z- of a Conv2D / Dense layer on input ``a``: the sums of the
    positive and of the negative products x_i w_ij, without bias."""
    import numpy as np

    ap, an = np.maximum(a, 0), np.minimum(a, 0)
    wp, wn = np.maximum(kernel, 0), np.minimum(kernel, 0)
    return (_apply_copy(layer, ap, wp) + _apply_copy(layer, an, wn),
            _apply_copy(layer, ap, wn) + _apply_copy(layer, an, wp))


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    import csc_analyzers  # noqa: F401  (graph mode first)

    for seed in args.seeds:
        model, x = build(args.network, seed)
        print(f"{args.network}, seed {seed}")
        for key in args.methods:
            for variant, options in VARIANTS.items():
                analyzer = analyzer_for(key, model, options)
                row = growth_table(analyzer, x, args.bound, shares=not args.no_shares)
                print(f"  {key:20s} {variant:10s} logit {row['logit']:.4g}  "
                      f"map sum / logit {row['ratio']:.4g}  finite {row['finite']}  "
                      f"first |R| > {args.bound:g} |logit|: {row['first']}")
                if row["overflow"]:
                    print(f"      relevance not finite (float32 overflow) from the input "
                          f"of {row['overflow']} down")
                if len(row["blocks"]):
                    b = row["blocks"]
                    print(f"      per residual block |R| x{np.exp(np.mean(np.log(b))):.3g} "
                          f"(geometric mean; min {b.min():.3g}, max {b.max():.3g}, "
                          f"{len(b)} blocks)")
                for kind, (factor, shares) in sorted(row["per_type"].items(),
                                                     key=lambda kv: -kv[1][0]):
                    share = f", single-sign units {np.mean(shares):.0%}" if shares else ""
                    print(f"      {kind:24s} product of factors {factor:.3g}{share}")


if __name__ == "__main__":
    main()
