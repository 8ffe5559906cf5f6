#!/usr/bin/env python
"""Time every registered method against the forward pass, side by side.

For each network (VGG-16 with random weights, batch 8; the CIFAR net, batch
64) this measures in one process: the forward pass; for every method (by
default every method of the registry on the CIFAR net and, to keep the run
short on a CPU, the seven methods with speed targets or reference numbers on
VGG-16) the first-call build time (building the graph and running the
first batch), the setup time (that minus one timed batch: what the first
call costs beyond an analysis) and the median time per batch over
``--repeats`` runs after a warm-up, its ratio to the forward pass and, where
innvestigate 2.1.2 has the same rule, innvestigate's own time and the ratio
between the two (the analysis, the forward pass and innvestigate's analysis
run in turn, each at least ``--repeats`` times and 2 s in total, so that a
change of machine load during the run does not bias the ratios); the cost of
CSC (5 random vectors for one image injected at the logits and read at every
reported layer) and of one level of a cascading sanity check (assigning
random weights to the analyzer's variables and analysing again), both
relative to one analysis of that image and timed in turn with it. Peak
resident memory of CSC on each network is measured in a fresh subprocess,
for the method whose CSC holds the most memory (``MEMORY_METHOD``).
SmoothGrad and Integrated Gradients (50 and 64 gradient passes per image)
are timed on VGG-16 only with --include-slow. The PatternNet /
PatternAttribution statistics (the default run's pattern step: the
two-component estimator on 1,024 built-in training images of the CIFAR net,
batches of 64) are timed batch by batch in turn with the forward pass of the
same batch; their row ("pattern statistics") has the setup (building the
statistics graph) in ``build_s``, the summed statistics time in
``median_s`` and the summed forward time in ``forward_s``. Writes a CSV and
prints a table.

    python scripts/benchmark.py                  # VGG-16 (7 methods) + CIFAR net (all)
    python scripts/benchmark.py --methods all,extra   # every method on both networks
    python scripts/benchmark.py --quick          # the same protocol, short: about 5 min
    python scripts/benchmark.py --tiny           # CIFAR net, batch 16, 2 repeats,
                                                 # one method per family (tests)

``--quick`` keeps the side-by-side protocol (method, forward pass and
innvestigate's analyzer timed in turn, build + first call per method, CSC
and sanity-level costs, the pattern statistics against the forward pass) on
both networks with ``QUICK_METHODS``, 2 repeats of at least
``QUICK_MIN_SECONDS`` each, and no memory probe (the pattern statistics keep
their 1,024 images: with fewer, the fixed cost of computing the patterns
from the sums distorts the ratio).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from residual_support import _tf  # noqa: F401,E402

import pandas as pd  # noqa: E402

COLUMNS = ["network", "batch", "method", "analyzer", "build_s", "setup_s", "median_s",
           "forward_s", "ratio_forward", "innvestigate_twin", "innvestigate_s",
           "ratio_innvestigate", "csc_s", "csc_ratio", "sanity_level_s", "sanity_ratio",
           "csc_peak_rss_mb"]

BATCH = {"vgg16": 8, "cifar-net": 64}
TINY_BATCH = 16
# gradient averages run 50-64 backward passes per image: on VGG-16 one batch of 8 takes
# minutes on a CPU, so the default run times them on the CIFAR net only (--include-slow)
SLOW = {"vgg16": ("SmoothGrad", "Integrated Gradients")}
# default method sets: every method on the CIFAR net; on VGG-16 (about 1.5 min per method
# on 2 CPU cores with its innvestigate twin, CSC and a sanity level) only the methods with
# speed targets and the innvestigate reference points Gradient and LRP-z;
# --methods all,extra times every method on both
DEFAULT_METHODS = {"cifar-net": "all,extra",
                   "vgg16": "Gradient,LRP-z,LRP a1b0,LRP z+,Excitation BP,LRP a2b1,LRP a5b4"}
# one method per family: gradient, LRP with and without an innvestigate twin, patterns, DeepLIFT
TINY_METHODS = "Gradient,LRP a1b0,LRP-z,Excitation BP,PatternNet,DeepLIFT Resc."
# --quick: on VGG-16 the innvestigate reference points (LRP a1b0's setup alone took 163 s of a
# 23-minute --quick run on a loaded machine), on the CIFAR net one method per family;
# 2 repeats of at least QUICK_MIN_SECONDS per function
QUICK_METHODS = {"vgg16": "Gradient,LRP-z",
                 "cifar-net": "Gradient,LRP-z,LRP a1b0,PatternNet,DeepLIFT Resc."}
QUICK_REPEATS, QUICK_MIN_SECONDS = 2, 0.5
PATTERN_IMAGES, PATTERN_BATCH = 1024, 64


MIN_SECONDS = 2.0  # per function in timed_together (--quick: QUICK_MIN_SECONDS)


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_together(fns, repeats: int, min_seconds: float | None = None,
                   max_repeats: int = 50) -> list:
    """Median wall time of each function in ``fns``, run in turn (after one
    warm-up of each) so that all see the same machine load: at least
    ``repeats`` rounds, more (up to ``max_repeats``) until each function has
    run ``min_seconds`` in total (default :data:`MIN_SECONDS`), which steadies
    the ratios of fast calls."""
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    while len(times[0]) < max_repeats and (
            len(times[0]) < repeats or min(sum(t) for t in times) < min_seconds):
        for fn, store in zip(fns, times):
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of the processes it forked from
    (``ru_maxrss``: Linux carries it over ``fork`` and ``exec``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def own_peak_rss_mb() -> float:
    """Peak resident memory of this process's own address space (``VmHWM``),
    not inherited from a parent; ``ru_maxrss`` where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def innvestigate_twin(spec, kwargs):
    """innvestigate 2.1.2's analyzer for the same rule, or None."""
    import innvestigate.analyzer as ianalyzer
    if spec.analyzer not in ianalyzer.analyzers:
        return None
    # residual_rule is the project's option (innvestigate has one handling)
    return ianalyzer.analyzers[spec.analyzer], {
        key: value for key, value in kwargs.items() if key != "residual_rule"}


def inputs_for(net, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low, high = net.input_range
    shape = (batch,) + tuple(net.model.input_shape[1:])
    return rng.uniform(low, high, size=shape).astype(np.float32)


def random_patterns(net, batch: int, seed: int):
    """Linear-estimator patterns of the network from ``2 * batch`` random inputs
    (speed only: the values do not matter for timing)."""
    from csc_analyzers.pattern.estimators import estimate_patterns
    x = inputs_for(net, 2 * batch, seed)
    return estimate_patterns(net.model, [x[:batch], x[batch:]], estimator="linear")


def fresh_network(name: str, seed: int):
    """The network with seeded random weights in a new graph (the previous
    method's analyzer graphs are freed: on VGG-16 they fill gigabytes)."""
    from csc_analyzers.experiments.common import analysis_model
    from csc_analyzers.models import load_network
    from tensorflow import keras

    keras.backend.clear_session()
    net = load_network(name, weights=None, seed=seed)
    return net, analysis_model(net)


def bench_network(name: str, repeats: int, methods, seed: int, batch: int | None = None,
                  include_slow: bool = False, on_row=None,
                  min_seconds: float | None = None) -> list:
    """The rows of ``name``; ``on_row(rows)`` is called after each method."""
    from csc_analyzers.experiments.common import build_analyzer
    from csc_analyzers.experiments.randomization import Randomizer, weight_layers
    from csc_analyzers.experiments.sanity import weight_sync

    net, model = fresh_network(name, seed)
    batch = batch or BATCH[name]
    x = inputs_for(net, batch, seed)
    forward_s = timed(lambda: model.predict_on_batch(x), repeats)
    print(f"{name}: forward pass, batch {batch}: {forward_s:.3f} s", flush=True)
    rng = np.random.default_rng(seed)
    patterns = None
    rows = []
    for spec in methods:
        if not spec.runs_on(name):
            continue
        if spec.name in SLOW.get(name, ()) and not include_slow:
            print(f"  {spec.name:<24} left out on {name} (--include-slow times it)", flush=True)
            continue
        net, model = fresh_network(name, seed)
        top = weight_layers(model)[-1].name
        if spec.needs_patterns and patterns is None:  # numpy arrays: outlive the graph
            patterns = random_patterns(net, batch, seed)
        targets = rng.integers(0, net.n_classes, size=batch)
        start = time.perf_counter()
        analyzer = build_analyzer(spec, model, net, lambda _net: patterns)
        analyzer.analyze(x, neuron_selection=targets)
        build_s = time.perf_counter() - start
        twin = innvestigate_twin(spec, spec.analyzer_kwargs(net.input_range))
        row = {"network": name, "batch": batch, "method": spec.name, "analyzer": spec.analyzer,
               "innvestigate_twin": "none" if twin is None else twin[0].__name__}
        fns = [lambda: analyzer.analyze(x, neuron_selection=targets),
               lambda: model.predict_on_batch(x)]
        if twin is not None:
            cls, twin_kwargs = twin
            reference = cls(model, neuron_selection_mode="index", **twin_kwargs)
            fns.append(lambda: reference.analyze(x, neuron_selection=targets))
        median_s, forward_s, *reference_s = timed_together(fns, repeats, min_seconds)
        if reference_s:
            row["innvestigate_s"] = reference_s[0]
            row["ratio_innvestigate"] = median_s / reference_s[0]
        row.update({"build_s": build_s, "setup_s": build_s - median_s, "median_s": median_s,
                    "forward_s": forward_s, "ratio_forward": median_s / forward_s})
        one, target = x[:1], targets[:1]
        with Randomizer(model, seed=seed) as randomizer:
            sync = weight_sync(analyzer, spec.name, model)

            def level():
                sync(randomizer.set_randomized([top]))
                analyzer.analyze(one, neuron_selection=target)
                sync(randomizer.set_randomized(()))
            fns = [lambda: analyzer.analyze(one, neuron_selection=target), level]
            if spec.runs_on(name, "csc") and hasattr(analyzer, "propagate"):
                vectors = rng.standard_normal((5, net.n_classes)).astype(np.float32)
                layers = [layer for layer in net.layers[:-1] if layer != net.csc_layers[0]]
                fns.append(lambda: analyzer.propagate(one, vectors, net.csc_layers[0], layers))
            single_s, level_s, *csc_s = timed_together(fns, repeats, min_seconds)
        if csc_s:
            row["csc_s"], row["csc_ratio"] = csc_s[0], csc_s[0] / single_s
        row["sanity_level_s"], row["sanity_ratio"] = level_s, level_s / single_s
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        print(f"  {spec.name:<24} build {build_s:6.2f} s (setup {build_s - median_s:5.2f} s)  "
              f"{median_s:7.3f} s/batch "
              f"({row['ratio_forward']:.2f}x forward)", flush=True)
    return rows


# the method whose CSC holds the most memory on VGG-16 (fresh process, 5 vectors, every layer
# read: DeepLIFT Rev.C. 5.9 GB, Abla. 5.2 GB, DeepLIFT Resc. 5.0 GB, LRP a5b4 4.4 GB, a2b1
# 4.2 GB, PatternAttr. 4.1 GB, PatternNet 3.5 GB, Integrated Gradients 3.2 GB, the other
# methods with relevance injection 2.1-3.2 GB)
MEMORY_METHOD = "DeepLIFT Rev.C."


def memory_probe(name: str, seed: int, method: str = MEMORY_METHOD) -> float:
    """Peak RSS (MB) of a fresh process running CSC (5 vectors injected at the
    logits, every layer read) for ``method`` on one image."""
    code = (
        "import sys, json; sys.path[:0] = [%r, %r]\n"
        "import numpy as np\n"
        "from csc_analyzers.experiments.common import analysis_model, build_analyzer\n"
        "from csc_analyzers.models import load_network\n"
        "from csc_analyzers.registry import get_method\n"
        "from benchmark import own_peak_rss_mb\n"
        "net = load_network(%r, weights=None)\n"
        "a = build_analyzer(get_method(%r), analysis_model(net), net)\n"
        "x = np.zeros((1,) + tuple(net.model.input_shape[1:]), np.float32)\n"
        "v = np.random.default_rng(%d).standard_normal((5, net.n_classes)).astype(np.float32)\n"
        "a.propagate(x, v, net.csc_layers[0], [l for l in net.layers if l != net.csc_layers[0]])\n"
        "print(json.dumps(own_peak_rss_mb()))\n"
    ) % (str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent),
         name, method, seed)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    return float(json.loads(out))


def op_profile(name: str, method: str, seed: int, top: int = 12) -> pd.DataFrame:
    """Where one analysis of a batch spends its time: the TF1 step trace of
    ``method`` on ``name`` (batch as in the benchmark), summed per op type.
    ``share`` is the op type's fraction of the summed op time (ops running in
    parallel on several cores each count fully)."""
    import tensorflow as tf
    from csc_analyzers.experiments.common import build_analyzer
    from csc_analyzers.registry import select_methods

    (spec,) = select_methods(method)
    net, model = fresh_network(name, seed)
    batch = BATCH[name]
    x = inputs_for(net, batch, seed)
    patterns = random_patterns(net, batch, seed) if spec.needs_patterns else None
    targets = np.random.default_rng(seed).integers(0, net.n_classes, size=batch)
    analyzer = build_analyzer(spec, model, net, lambda _net: patterns)
    analyzer.analyze(x, neuron_selection=targets)  # builds the graph, warms up
    inner = getattr(analyzer, "_subanalyzer", analyzer)
    graph_model = inner._analyzer_model
    feeds = [x, inner._get_neuron_selection_array(targets, batch)]
    session = tf.compat.v1.keras.backend.get_session()
    feed_dict = dict(zip(graph_model.inputs, feeds[:len(graph_model.inputs)]))
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    metadata = tf.compat.v1.RunMetadata()
    session.run(graph_model.outputs, feed_dict=feed_dict)
    start = time.perf_counter()
    session.run(graph_model.outputs, feed_dict=feed_dict, options=options,
                run_metadata=metadata)
    wall = time.perf_counter() - start
    totals: dict = {}
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            # "name = OpType(inputs)"; grappler/oneDNN rewrites are not in the Python graph
            label = node.timeline_label.split(" = ", 1)
            op_type = label[1].split("(", 1)[0] if len(label) == 2 else node.node_name
            micros = node.all_end_rel_micros
            totals[op_type] = totals.get(op_type, 0) + micros / 1e6
    table = pd.DataFrame(sorted(totals.items(), key=lambda kv: -kv[1]),
                         columns=["op_type", "seconds"])
    table["share"] = table["seconds"] / table["seconds"].sum()
    print(f"{name}, {spec.name}, batch {batch}: traced step {wall:.2f} s wall, "
          f"{table['seconds'].sum():.2f} s summed op time", flush=True)
    return table.head(top)


def pattern_statistics(n_images: int, seed: int, batch: int = PATTERN_BATCH) -> dict:
    """The default run's pattern step on the CIFAR net (seeded random weights,
    the two-component estimator, ``n_images`` built-in training images in
    batches of ``batch``): each batch's statistics update and forward pass
    timed in turn (same machine load), summed over the batches; the setup is
    building the statistics graph, ``median_s`` includes reading the sums
    and computing the patterns."""
    from csc_analyzers.data import builtin
    from csc_analyzers.pattern.estimators import PatternEstimator

    net, model = fresh_network("cifar-net", seed)
    images = builtin.load("train", n=n_images, seed=seed)[0]
    batches = [net.preprocess(images[i:i + batch]) for i in range(0, n_images, batch)]
    model.predict_on_batch(batches[0])  # warm-up
    start = time.perf_counter()
    estimator = PatternEstimator(net.model, "relu")
    setup_s = time.perf_counter() - start
    stats_s = forward_s = 0.0
    for x in batches:
        start = time.perf_counter()
        estimator.update(x)
        stats_s += time.perf_counter() - start
        start = time.perf_counter()
        net.model.predict_on_batch(x)
        forward_s += time.perf_counter() - start
    start = time.perf_counter()
    estimator.patterns()
    stats_s += time.perf_counter() - start
    print(f"cifar-net: pattern statistics, {n_images} images in batches of {batch}: "
          f"{stats_s:.2f} s, forward passes {forward_s:.2f} s "
          f"({stats_s / forward_s:.2f}x forward); graph setup {setup_s:.2f} s", flush=True)
    return {"network": "cifar-net", "batch": batch,
            "method": f"pattern statistics ({n_images} images)", "analyzer": "PatternEstimator",
            "innvestigate_twin": "none", "build_s": setup_s, "setup_s": setup_s,
            "median_s": stats_s, "forward_s": forward_s, "ratio_forward": stats_s / forward_s}


def write_table(rows: list, out: Path) -> None:
    """Write ``rows`` as the benchmark CSV, atomically (readers see the old
    file or the whole new one)."""
    from csc_analyzers.experiments.store import atomic_write_text
    atomic_write_text(out, pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False,
                                                                      float_format="%.4g"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="vgg16,cifar-net",
                        help="comma-separated networks (default: vgg16,cifar-net)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per measurement after one warm-up (default 5)")
    parser.add_argument("--methods", default=None,
                        help="registry names, 'all' (paper) and/or 'extra', for every network "
                             "(default: both on the CIFAR net; on VGG-16 "
                             f"{DEFAULT_METHODS['vgg16']}; with --tiny: {TINY_METHODS})")
    parser.add_argument("--quick", action="store_true",
                        help="the same protocol in about 5 minutes: QUICK_METHODS, "
                             f"{QUICK_REPEATS} repeats, no memory probe")
    parser.add_argument("--pattern-images", type=int, default=None,
                        help="images for the pattern statistics on the CIFAR net (default "
                             f"{PATTERN_IMAGES}, --tiny {PATTERN_BATCH}; 0 leaves them out)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"CIFAR net only, batch {TINY_BATCH}, 2 repeats, one method per "
                             "family: a quick check that every column fills")
    parser.add_argument("--include-slow", action="store_true",
                        help="also time SmoothGrad and Integrated Gradients on VGG-16 "
                             "(minutes per batch on a CPU)")
    parser.add_argument("--profile", default=None, metavar="METHOD",
                        help="instead of the benchmark: trace one analysis of METHOD on the "
                             "first of --networks and print the time per TF op type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/benchmark.csv", help="CSV to write")
    args = parser.parse_args(argv)

    from csc_analyzers.registry import available_methods, select_methods

    if args.quick and args.tiny:
        parser.error("--quick and --tiny exclude each other")
    networks = ["cifar-net"] if args.tiny else [n.strip() for n in args.networks.split(",")]
    repeats = 2 if args.tiny else QUICK_REPEATS if args.quick else args.repeats
    min_seconds = QUICK_MIN_SECONDS if args.quick else MIN_SECONDS
    pattern_images = args.pattern_images
    if pattern_images is None:
        pattern_images = PATTERN_BATCH if args.tiny else PATTERN_IMAGES
    unknown = [n for n in networks if n not in BATCH]
    if unknown:
        parser.error(f"--networks: unknown {unknown}; valid: {sorted(BATCH)}")
    if args.profile:
        table = op_profile(networks[0], args.profile, args.seed)
        print(table.to_string(index=False, float_format="%.3f"))
        return 0
    def methods_for(network):
        default = (TINY_METHODS if args.tiny else QUICK_METHODS[network] if args.quick
                   else DEFAULT_METHODS[network])
        chosen = args.methods or default
        return available_methods(select_methods(chosen))

    try:  # bad names fail here, before any timing
        methods = {name: methods_for(name) for name in networks}
    except KeyError as error:
        parser.error(f"--methods: {error.args[0]}")
    out = Path(args.out)
    rows = []
    started = time.perf_counter()

    def save(new_rows=()):  # after every method: a killed run keeps what it measured
        write_table(rows + list(new_rows), out)

    for name in networks:
        rows.extend(bench_network(name, repeats, methods[name], args.seed,
                                  TINY_BATCH if args.tiny else None, args.include_slow,
                                  on_row=save, min_seconds=min_seconds))
        if name == "cifar-net" and pattern_images > 0:
            rows.append(pattern_statistics(pattern_images, args.seed))
        save()
        if args.quick:
            continue
        peak = memory_probe(name, args.seed)
        for row in rows:
            if row["network"] == name:
                row["csc_peak_rss_mb"] = peak
        save()
        print(f"{name}: peak RSS of CSC with {MEMORY_METHOD} (5 vectors, fresh process): "
              f"{peak:.0f} MB", flush=True)
    table = pd.DataFrame(rows, columns=COLUMNS)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["analyzer"]).to_string(index=False, float_format="%.3g"))
    print(f"process peak RSS: {peak_rss_mb():.0f} MB; wall time "
          f"{time.perf_counter() - started:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
