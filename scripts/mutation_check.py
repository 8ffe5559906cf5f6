#!/usr/bin/env python
"""Mutation check: plausible one-line bugs must fail the tests that guard them.

Each entry of :data:`MUTATIONS` names a file, an exact snippet of it (found
exactly once), its replacement and the tests expected to catch the change.
The script copies the repository (the files git knows about, tracked or
untracked and not ignored, as they are in the working tree) into a temporary
directory, and for each mutation writes the mutated file there, runs its
tests in that copy (one process, ``-x``, the working directory and
``PYTHONPATH`` set to the copy so its packages win over an installed
checkout), and restores the file. The working tree is never written to.

A mutation is *caught* when pytest reports failing tests, *survived* when the
tests pass; a usage error, no tests collected or a timeout is an *error*. The
exit status is 0 only if every selected mutation is caught.

    python scripts/mutation_check.py                 # every mutation
    python scripts/mutation_check.py --list
    python scripts/mutation_check.py --only random_logit_explains_true_class_twice
    python scripts/mutation_check.py --baseline      # first check the tests pass unmutated

Run it with the project's environment (e.g. ``.venv/bin/python
scripts/mutation_check.py``) or name one with ``--python``. To add a
mutation, append a :class:`Mutation` to :data:`MUTATIONS`.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    """``original`` (exact text, once in ``file``) becomes ``replacement``;
    ``tests`` are pytest node ids or files, relative to the repository root."""

    name: str
    file: str
    original: str
    replacement: str
    tests: tuple
    effect: str


MUTATIONS: list = [
    Mutation("deeplift_reveal_cancel_as_rescale", "csc_analyzers/methods/deeplift_convert.py",
             '"reveal_cancel": dl.NonlinearMxtsMode.RevealCancel,',
             '"reveal_cancel": dl.NonlinearMxtsMode.Rescale,',
             ("tests/test_deeplift_reference.py",),
             "every DeepLIFT Rev.C. number is DeepLIFT Resc.'s"),
    Mutation("deeplift_cross_mxts_ignored", "csc_analyzers/methods/deeplift_wrapper.py",
             "self._cross_mxts = bool(cross_mxts)", "self._cross_mxts = True",
             ("tests/test_deeplift_reference.py::test_deeplift_equals_numpy",),
             "DeepLIFT Abla. is DeepLIFT Resc."),
    Mutation("deeplift_conv_ablation_keeps_cross_terms", "residual_support/deeplift_layers.py",
             "            return super()._get_mxts_increments_for_inputs()\n"
             "        return self._linear_mxts_increments()",
             "            return super()._get_mxts_increments_for_inputs()\n"
             "        return super()._get_mxts_increments_for_inputs()",
             ("tests/test_deeplift_reference.py::test_deeplift_equals_numpy[conv-ablation]",),
             "the ablation's convolutions keep the terms through negative weights"),
    Mutation("deeplift_reveal_cancel_negative_split", "residual_support/deeplift_layers.py",
             "neg_contribs = self._linear(d_neg, k_pos) + self._linear(d_pos, k_neg)",
             "neg_contribs = self._linear(d_neg, k_pos) + self._linear(d_neg, k_neg)",
             ("tests/test_deeplift_reference.py::test_deeplift_equals_numpy",),
             "RevealCancel's negative part dz- of the pre-activation delta is wrong"),
    Mutation("deeplift_maxpool_not_interpolated", "residual_support/deeplift_pooling.py",
             "self._mix = tf.where(total > 0.0, rise / safe_total, tf.ones_like(total))",
             "self._mix = tf.ones_like(total)",
             ("tests/test_deeplift_reference.py::test_deeplift_equals_numpy",),
             "DeepLIFT max pooling routes everything to the arg max of x"),
    Mutation("injection_ignores_rule_mappings", "csc_analyzers/injection.py",
             "meta = self._reverse_mapping(layer)", "meta = None",
             ("tests/test_method_references.py::test_equals_innvestigate",),
             "GuidedBP's (and Deconv's) rectification is dropped: they become the gradient"),
    Mutation("deconv_relu_layer_rectification_dropped", "residual_support/mixin.py",
             "return [tf.nn.relu(r) for r in reversed_Ys]", "return list(reversed_Ys)",
             ("tests/test_method_references.py::"
              "test_separate_relu_layers_equal_innvestigate_on_activation_layers",),
             "Deconv on networks with separate ReLU layers (ResNets) is not Deconv"),
    Mutation("rectgrad_percentile_ignored", "csc_analyzers/methods/rectgrad.py",
             "rectify(y, r, self._percentile)", "rectify(y, r, 98.0)",
             ("tests/test_method_references.py::test_rectgrad_on_a_conv_net_equals_numpy",),
             "RectGrad's q has no effect"),
    Mutation("rectgrad_starts_from_the_logit", "csc_analyzers/methods/rectgrad.py",
             "        return tf.ones_like(X)", "        return X",
             ("tests/test_propagate_analyze.py",),
             "RectGrad's map starts from y_k, its CSC (propagate) from 1"),
    Mutation("propagate_start_sign_dropped", "csc_analyzers/injection.py",
             "feed[reversed_source] = relevance", "feed[reversed_source] = np.abs(relevance)",
             ("tests/test_propagate_analyze.py",),
             "the injected relevance loses its sign (GuidedBP/Deconv CSC from |v|)"),
    Mutation("csc_histogram_abs_dropped", "csc_analyzers/metrics/csc.py",
             "    finite = np.abs(values[np.isfinite(values)])\n"
             "    counts, _ = np.histogram(finite, bins=edges)",
             "    finite = values[np.isfinite(values)]\n"
             "    counts, _ = np.histogram(finite, bins=edges)",
             ("tests/test_experiment_values.py::"
              "test_csc_rows_and_histograms_equal_an_explicit_pairwise_cosine",),
             "negative cosines vanish from the pooled histogram; the medians move"),
    Mutation("csc_min_max_abs_dropped", "csc_analyzers/experiments/csc.py",
             "finite = np.abs(cos[np.isfinite(cos)])", "finite = cos[np.isfinite(cos)]",
             ("tests/test_experiment_values.py::"
              "test_csc_rows_and_histograms_equal_an_explicit_pairwise_cosine",),
             "the CSC p0 / p100 rows are signed"),
    Mutation("random_logit_explains_true_class_twice",
             "csc_analyzers/experiments/random_logit.py",
             "other_map = explain(analyzer, images[k], other, spec, image_id=key[2])",
             "other_map = explain(analyzer, images[k], labels[k], spec, image_id=key[2])",
             ("tests/test_experiment_values.py::test_random_logit_maps_explain_the_drawn_class",),
             "every random-logit score compares a map with itself"),
    Mutation("bootstrap_interval_of_the_data", "csc_analyzers/metrics/bootstrap.py",
             "lower, upper = np.percentile(medians, [low, high])",
             "lower, upper = np.percentile(x, [low, high])",
             ("tests/test_experiment_values.py::test_bootstrap_interval_covers_the_true_median",),
             "the median's interval is the spread of the data"),
    Mutation("report_converged_threshold", "csc_analyzers/claims.py",
             "CONVERGED = 0.99", "CONVERGED = 0.9",
             ("tests/test_experiment_values.py::test_report_verdict_uses_the_papers_threshold",),
             "methods with median CSC 0.9-0.99 are reported as converging"),
    Mutation("ssim_lower_percentile_is_the_minimum", "csc_analyzers/metrics/ssim.py",
             "low, high = np.percentile(x, [100.0 - percentile, percentile])",
             "low, high = np.min(x), np.percentile(x, percentile)",
             ("tests/test_experiments_metrics.py::test_paper_recipe_equals_the_papers_formula",),
             "every SSIM except RectGrad's normalises by the map's minimum (heavy tails)"),
    Mutation("ssim_paper_data_range_1", "csc_analyzers/metrics/ssim.py",
             '"paper", inverted=True, data_range=2.0,',
             '"paper", inverted=True, data_range=1.0,',
             ("tests/test_experiments_metrics.py::test_paper_recipe_equals_the_papers_formula",),
             "ssim_paper's constants are those of data_range 1, not the paper's 2"),
    Mutation("ssim_paper_not_inverted", "csc_analyzers/metrics/ssim.py",
             '"paper", inverted=True, data_range=2.0,',
             '"paper", inverted=False, data_range=2.0,',
             ("tests/test_experiments_metrics.py::test_paper_recipe_equals_the_papers_formula",),
             "ssim_paper maps the high end to 1 instead of 0 (the paper's inversion)"),
    Mutation("sanity_ignores_the_methods_ssim_percentile", "csc_analyzers/experiments/sanity.py",
             "percentile=spec.ssim_percentile)", ")",
             ("tests/test_experiments_randomization.py::"
              "test_stored_ssims_are_the_recipes_on_the_saved_maps",),
             "RectGrad's sanity-check SSIMs use 99.5 instead of its 100"),
    Mutation("random_logit_ignores_the_methods_ssim_percentile",
             "csc_analyzers/experiments/random_logit.py",
             "percentile=spec.ssim_percentile)", ")",
             ("tests/test_experiments_randomization.py::"
              "test_stored_ssims_are_the_recipes_on_the_saved_maps",),
             "RectGrad's random-logit SSIMs use 99.5 instead of its 100"),
    Mutation("smoothgrad_variance_as_standard_deviation", "csc_analyzers/methods/smoothgrad.py",
             "rng.normal(0.0, self._noise_scale, size=shape)",
             "rng.normal(0.0, self._noise_scale ** 2, size=shape)",
             ("tests/test_smoothgrad_noise.py::"
              "test_equals_the_mean_of_gradients_at_the_documented_noisy_inputs",),
             "SmoothGrad's noise has standard deviation noise_scale**2 (0.16 for 0.4)"),
    Mutation("smoothgrad_noise_not_per_image", "csc_analyzers/methods/smoothgrad.py",
             'rng = np.random.default_rng([self._seed, _key(key, "image id")])',
             "rng = np.random.default_rng(self._seed)",
             ("tests/test_smoothgrad_noise.py::test_two_images_get_different_noise",),
             "every image gets the same SmoothGrad noise"),
    Mutation("dtd_output_relu_restored", "csc_analyzers/methods/deep_taylor.py",
             "        if self._relu_output:", "        if True:",
             ("tests/test_deep_taylor_signed.py::test_negative_logit_gives_a_map_of_its_sign",),
             "DTD maps of negative logits are all zero again (innvestigate's output ReLU)"),
    Mutation("dtd_relu_output_on_by_default", "csc_analyzers/methods/deep_taylor.py",
             "relu_output: bool = False", "relu_output: bool = True",
             ("tests/test_deep_taylor_signed.py::test_negative_logit_gives_a_map_of_its_sign",),
             "DTD's signed output is opt-in instead of the default"),
    Mutation("add_relevance_clip_ignored", "residual_support/mixin.py",
             "        clip = self._add_relevance_clip\n", "        clip = None\n",
             ("tests/test_add_relevance_clip.py::test_clip_bounds_every_relevance_leaving_an_add",),
             "the paper recipe's (0, 1000) clip at ResNet-50's Adds has no effect"),
    Mutation("paper_recipe_runs_dtd_on_resnet50", "csc_analyzers/registry.py",
             '_PAPER_NO_DTD = {(PAPER, "resnet50"): RecipeChange(\n    exclude=True,',
             '_PAPER_NO_DTD = {(PAPER, "resnet50"): RecipeChange(\n    exclude=False,',
             ("tests/test_recipe.py::test_paper_recipe_leaves_dtd_out_on_resnet50_only",),
             "--recipe paper runs DTD on ResNet-50, which the paper's code left out"),
    Mutation("claims_ssim_cluster_threshold", "csc_analyzers/claims.py",
             "return (a.median > 0.9 and", "return (a.median > 0.8 and",
             ("tests/test_report_claims.py::test_random_logit_claim_fails_below_the_threshold",
              "tests/test_report_claims.py::test_sanity_claim_reads_level_one_only"),
             "the random-logit and sanity-check claims hold with converging methods' median "
             "SSIM 0.8-0.9"),
    Mutation("claims_scored_outside_their_networks", "csc_analyzers/claims.py",
             "    if ev.network not in spec.networks:\n", "    if False:\n",
             ("tests/test_report_claims.py::"
              "test_cifar_net_report_does_not_score_the_vgg16_resnet50_claims",),
             "the VGG-16 / ResNet-50 claims are scored on the small network"),
    Mutation("claims_relu_backward_methods_in_the_converging_set", "csc_analyzers/claims.py",
             "CONVERGING_VGG16 = (\"DTD\",", "CONVERGING_VGG16 = (\"GuidedBP\", \"DTD\",",
             ("tests/test_claims_scope.py::"
              "test_registry_has_one_spec_per_claim_with_scope_and_evaluator",),
             "GuidedBP counts against the convergence claim on VGG-16"),
    Mutation("undefined_maps_scored", "csc_analyzers/integrity.py",
             "flags |= (undefined_reasons(out, column=column) != \"\").to_numpy()",
             "flags |= False",
             ("tests/test_undefined_maps.py::"
              "test_report_leaves_them_out_and_counts_them_per_reason",),
             "a finite score of an all-zero map (e.g. its L1 of 0) enters the medians"),
    Mutation("report_claims_read_ssim_standard", "csc_analyzers/report.py",
             "SSIM_RECIPE = SSIM_RECIPES[\"paper\"]", "SSIM_RECIPE = SSIM_RECIPES[\"standard\"]",
             ("tests/test_report_claims.py::test_claims_read_the_paper_recipe_not_the_standard_one",),
             "the report's SSIM verdicts and medians are ssim_standard's"),
    Mutation("report_counts_flagged_rows_in_medians", "csc_analyzers/report.py",
             ".where(~rows[NONFINITE].astype(bool))", "",
             ("tests/test_report_claims.py::test_nan_and_flagged_rows_are_not_in_the_medians",),
             "SSIMs of maps that held NaN/Inf enter the report's medians"),
    Mutation("random_class_includes_the_true_class", "csc_analyzers/experiments/common.py",
             "return draw + 1 if draw >= true_class else draw", "return draw",
             ("tests/test_experiment_values.py::"
              "test_random_class_is_uniform_over_the_other_classes",),
             "the random logit is sometimes the true class: those SSIMs are 1"),
    Mutation("audit_prediction_ignores_reference_cost", "csc_analyzers/audit/cost.py",
             "build_s=measured.build_s * own.build / ref.build",
             "build_s=measured.build_s * own.build",
             ("tests/test_audit_cost.py::test_predicted_cost_scales_the_measured_one",),
             "a method's predicted build time is wrong unless Gradient is the measured one"),
    Mutation("randomizer_restores_only_randomised", "csc_analyzers/experiments/randomization.py",
             "if name not in changed and not _same_weights(current[name], "
             "self._original[name]):",
             "if False:",
             ("tests/test_experiments_randomization.py::"
              "test_randomizer_reads_all_weights_in_one_session_run",),
             "a weight changed by someone else in the block is not put back"),
    Mutation("released_graph_keeps_custom_gradients", "csc_analyzers/experiments/tasks.py",
             "        _forget_custom_gradients(custom_gradients)\n",
             "",
             ("tests/test_memory_release.py::"
              "test_a_released_graph_with_custom_gradients_is_freed",),
             "every released graph of a swish model stays alive through the gradient "
             "registry"),
]


def scratch_copy(destination: Path) -> Path:
    """Copy the files git knows about (tracked, or untracked and not ignored)
    from the working tree into ``destination``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def check(mutations) -> None:
    """Every original snippet occurs exactly once and differs from its replacement."""
    names = [m.name for m in mutations]
    if len(set(names)) != len(names):
        raise SystemExit("mutation names must be unique")
    for m in mutations:
        text = (ROOT / m.file).read_text()
        count = text.count(m.original)
        if count != 1:
            raise SystemExit(f"mutation {m.name!r}: the original snippet occurs {count} times "
                             f"in {m.file} (must be exactly once): {m.original!r}")
        if m.original == m.replacement:
            raise SystemExit(f"mutation {m.name!r}: replacement equals the original")


def run_tests(python: str, copy: Path, tests, timeout: float) -> tuple:
    """(status, first failing test or message, seconds) of pytest in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    command = [python, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-x", "-q",
               "-o", "addopts=", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "error", f"timeout after {timeout:.0f} s", time.perf_counter() - start
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.M)
    if done.returncode == 0:
        return "passed", "", seconds
    if done.returncode == 1 and failed:
        return "failed", failed[0], seconds
    tail = " | ".join(output.strip().splitlines()[-3:])
    return "error", f"pytest exit code {done.returncode}: {tail}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Apply one-line mutations to a scratch copy of the repository and check "
                    "that the tests expected to catch each one fail.")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this mutation (repeat, or give a comma list)")
    parser.add_argument("--baseline", action="store_true",
                        help="first run every selected mutation's tests unmutated; they must pass")
    parser.add_argument("--python", default=sys.executable,
                        help="Python of the environment with the project's dependencies "
                             "(default: this one)")
    parser.add_argument("--timeout", type=float, default=1200.0,
                        help="seconds per pytest run (default 1200)")
    args = parser.parse_args(argv)

    selected = list(MUTATIONS)
    if args.only:
        wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {m.name for m in MUTATIONS})
        if unknown:
            parser.error(f"unknown mutation(s) {unknown}; --list shows the names")
        selected = [m for m in MUTATIONS if m.name in wanted]
    if args.list:
        for m in selected:
            print(f"{m.name}\n    {m.file}: {m.original!r} -> {m.replacement!r}\n"
                  f"    effect: {m.effect}\n    tests: {' '.join(m.tests)}")
        return 0
    check(selected)

    results = []
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
        copy = scratch_copy(Path(tmp) / "repo")
        if args.baseline:
            tests = sorted({t for m in selected for t in m.tests})
            status, detail, seconds = run_tests(args.python, copy, tests, args.timeout)
            print(f"baseline: {status} in {seconds:.0f} s {detail}", flush=True)
            if status != "passed":
                print("the tests fail without a mutation: nothing to check", file=sys.stderr)
                return 2
        for m in selected:
            path = copy / m.file
            original_text = path.read_text()
            path.write_text(original_text.replace(m.original, m.replacement, 1))
            try:
                status, detail, seconds = run_tests(args.python, copy, m.tests, args.timeout)
            finally:
                path.write_text(original_text)
            verdict = {"failed": "caught", "passed": "SURVIVED"}.get(status, "ERROR")
            results.append((m.name, verdict))
            print(f"{verdict:8s} {m.name} ({seconds:.0f} s){': ' + detail if detail else ''}",
                  flush=True)
    caught = sum(v == "caught" for _, v in results)
    print(f"\n{caught} of {len(results)} mutations caught")
    for name, verdict in results:
        if verdict != "caught":
            print(f"  {verdict}: {name}")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
