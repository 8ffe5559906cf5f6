"""The ``paper`` / ``plain`` recipes: the registry's one source of what the
paper's code changed on ResNet-50, the recipe threaded through the
experiments and recorded in the result store, and ``--recipe`` on the CLIs."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from csc_analyzers import registry
from csc_analyzers.errors import ArgumentError
from csc_analyzers.experiments.common import ModelNetwork, build_analyzer, select_for
from csc_analyzers.experiments.csc import check_settings, plan_methods
from csc_analyzers.experiments.random_logit import run_random_logit
from csc_analyzers.experiments.store import ResultStore, merge_stores
from csc_analyzers.registry import ALL_METHODS, PAPER, PAPER_ADD_CLIP, PLAIN, get_method
from residual_nets import small_resnet

ROOT = Path(__file__).resolve().parents[1]
# the methods the paper's code ran with its clipped Add rule (get_custom_rule)
CLIPPED = {"LRP a1b0", "LRP a2b1", "LRP a5b4", "LRP CMP a1b0", "LRP CMP a2b1"}
# the paper's code converted the model with the deeplift package: its max-pool rule
DEEPLIFT = {"DeepLIFT Rev.C.", "DeepLIFT Resc.", "DeepLIFT Abla."}
EXPERIMENTS = (None, "csc", "sanity", "random_logit", "class_sensitivity")
RANGE = (-2.0, 3.0)


def test_paper_recipe_on_resnet50_clips_exactly_the_alpha_beta_and_cmp_methods():
    clipped = set()
    for spec in ALL_METHODS:
        plain = spec.analyzer_kwargs(RANGE, network="resnet50", recipe=PLAIN)
        paper = spec.analyzer_kwargs(RANGE, network="resnet50", recipe=PAPER)
        if "add_relevance_clip" in paper:
            assert paper == {**plain, "add_relevance_clip": PAPER_ADD_CLIP,
                             "residual_rule": "paper"}
            assert plain["residual_rule"] == "analyzer"
            clipped.add(spec.name)
        elif spec.name in DEEPLIFT:
            assert paper == {**plain, "maxpool_mode": "gradient"}
        else:
            assert paper == plain, spec.name
    assert clipped == CLIPPED
    assert PAPER_ADD_CLIP == (0.0, 1000.0)


def test_paper_recipe_leaves_dtd_out_on_resnet50_only():
    for spec in ALL_METHODS:
        for experiment in EXPERIMENTS:
            plain = spec.runs_on("resnet50", experiment)
            paper = spec.runs_on("resnet50", experiment, recipe=PAPER)
            assert paper == (plain and spec.name != "DTD"), (spec.name, experiment)
    dtd = get_method("DTD")
    assert dtd.runs_on("resnet50") and not dtd.runs_on("resnet50", recipe=PAPER)
    assert dtd.runs_on("small-resnet", recipe=PAPER) and dtd.runs_on("vgg16", recipe=PAPER)


@pytest.mark.parametrize("network", ["cifar-net", "small-resnet", "vgg16", "my_model"])
def test_paper_recipe_elsewhere_changes_only_deeplifts_maxpool_rule_on_study_networks(network):
    study = network in registry.STUDY_NETWORKS
    for spec in ALL_METHODS:
        paper = spec.analyzer_kwargs(RANGE, network=network, recipe=PAPER)
        if study and spec.name in DEEPLIFT:
            assert paper == {**spec.analyzer_kwargs(RANGE), "maxpool_mode": "gradient"}
        elif network == "small-resnet" and spec.name in CLIPPED:
            assert paper == {**spec.analyzer_kwargs(RANGE), "residual_rule": "paper"}
        else:
            assert paper == spec.analyzer_kwargs(RANGE), spec.name
        for experiment in EXPERIMENTS:
            assert spec.runs_on(network, experiment, recipe=PAPER) == \
                spec.runs_on(network, experiment)
    assert registry.effective_recipe(network, PAPER) == (PAPER if study else PLAIN)
    assert registry.effective_recipe("resnet50", PAPER) == PAPER


def test_study_networks_are_the_loadable_networks():
    from csc_analyzers.models import NETWORK_NAMES
    assert NETWORK_NAMES == registry.STUDY_NETWORKS


def test_recipe_settings_name_every_change():
    settings = registry.recipe_settings("resnet50", PAPER)
    assert settings["recipe"] == PAPER
    changes = settings["recipe_changes"]
    assert changes["DTD"] == "left out"
    assert {name for name, c in changes.items() if c != "left out" and
            "add_relevance_clip" in c} == CLIPPED
    assert all(changes[name] == {"maxpool_mode": "gradient"} for name in DEEPLIFT)
    assert set(changes) == CLIPPED | DEEPLIFT | {"DTD"}
    assert registry.recipe_settings("cifar-net", PAPER)["recipe_changes"] == {
        name: {"maxpool_mode": "gradient"} for name in DEEPLIFT}
    assert registry.recipe_settings("resnet50", PLAIN) == registry.RECIPE_SETTINGS_DEFAULTS
    assert registry.recipe_settings("my_model", PAPER) == registry.RECIPE_SETTINGS_DEFAULTS
    assert json.loads(json.dumps(settings)) == settings  # what the store compares


def test_plain_recipe_is_todays_configuration():
    for spec in ALL_METHODS:
        for network in ("resnet50", "vgg16", None):
            assert spec.analyzer_kwargs(RANGE, network=network, recipe=PLAIN) == \
                spec.analyzer_kwargs(RANGE)
        assert spec.runs_on("resnet50", recipe=PLAIN) == ("resnet50" not in
                                                          spec.exclude_networks)


def test_unknown_recipe_and_missing_network_are_errors():
    spec = get_method("LRP a1b0")
    with pytest.raises(ValueError, match="unknown recipe 'exact'; valid recipes: paper, plain"):
        spec.analyzer_kwargs(RANGE, network="resnet50", recipe="exact")
    with pytest.raises(ValueError, match="unknown recipe"):
        spec.runs_on("resnet50", recipe="Paper")
    with pytest.raises(ValueError, match="pass network="):
        spec.analyzer_kwargs(RANGE, recipe=PAPER)


def test_registry_docstring_no_longer_says_the_paper_ran_dtd_on_resnet50():
    doc = registry.__doc__
    assert "did *not* run DTD on" in doc
    assert "ran every LRP variant, DTD" not in doc


def _resnet_named(name):
    return ModelNetwork(name=name, model=small_resnet(seed=0), input_range=(-3.0, 3.0))


def test_experiments_build_the_recipes_analyzers():
    """A small ResNet standing in for 'resnet50': the paper recipe skips DTD
    and gives the clipped methods the clip, through select_for / build_analyzer
    and the CSC plan."""
    network = _resnet_named("resnet50")
    specs = [get_method(n) for n in ("DTD", "LRP a2b1", "LRP CMP a1b0", "LRP-z")]
    runnable, skipped = select_for(network, specs, "sanity", recipe=PAPER)
    assert [s.name for s in runnable] == ["LRP a2b1", "LRP CMP a1b0", "LRP-z"]
    assert [s.name for s, _ in skipped] == ["DTD"] and "paper recipe" in skipped[0][1]
    run, skipped_csc = plan_methods(network, specs, recipe=PAPER)
    assert [s.name for s in run] == ["LRP a2b1", "LRP CMP a1b0", "LRP-z"]
    assert [n for n, _ in skipped_csc] == ["DTD"]
    assert [s.name for s in select_for(network, specs, "sanity")[0]] == [s.name for s in specs]
    model = network.model
    for name, clip in (("LRP a2b1", PAPER_ADD_CLIP), ("LRP CMP a1b0", PAPER_ADD_CLIP),
                       ("LRP-z", None)):
        paper = build_analyzer(get_method(name), model, network, recipe=PAPER)
        assert paper._add_relevance_clip == clip, name
        plain = build_analyzer(get_method(name), model, network)
        assert plain._add_relevance_clip is None
        assert (plain is paper) == (clip is None), name


def test_run_records_the_recipe_and_refuses_to_mix(tmp_path):
    network = _resnet_named("resnet50")
    x = np.random.default_rng(0).normal(size=(1, 12, 12, 3)).astype("float32")
    specs = [get_method("DTD"), get_method("LRP a2b1")]
    store = run_random_logit(network, x, [1], [0], specs, tmp_path, recipe=PAPER)
    assert [path.name.split("__")[1] for path in store.units_dir.glob("*.csv")] == ["LRP_a2b1"]
    recorded = json.loads(store.settings_path("resnet50").read_text())
    assert recorded == registry.recipe_settings("resnet50", PAPER)
    with pytest.raises(ArgumentError, match="made with {'recipe': 'paper'"):
        run_random_logit(network, x, [1], [0], specs, tmp_path, recipe=PLAIN)
    run_random_logit(network, x, [1], [0], specs, tmp_path, recipe=PAPER)  # resumes


def test_store_settings_treat_units_without_a_recipe_as_plain(tmp_path):
    store = ResultStore(tmp_path, "csc")
    # a CSC settings file written before recipes were recorded
    store.settings_path("resnet50").parent.mkdir(parents=True)
    store.settings_path("resnet50").write_text(json.dumps({"n_vectors": 5, "seed": 0}))
    check_settings(store, "resnet50", n_vectors=5, seed=0, recipe=PLAIN)
    with pytest.raises(ArgumentError, match="'recipe': 'plain'"):
        check_settings(store, "resnet50", n_vectors=5, seed=0, recipe=PAPER)
    # a store made under the older paper recipe (no DeepLIFT max-pool change,
    # no recorded changes) is not resumed with the new numbers
    store.settings_path("cifar-net").write_text(json.dumps(
        {"n_vectors": 5, "seed": 0, "recipe": PLAIN}))
    check_settings(store, "cifar-net", n_vectors=5, seed=0, recipe=PLAIN)
    with pytest.raises(ArgumentError, match="'recipe_changes'"):
        check_settings(store, "cifar-net", n_vectors=5, seed=0, recipe=PAPER)
    # on a network outside the study the paper recipe is plain: no conflict
    check_settings(store, "my_model", n_vectors=5, seed=0, recipe=PAPER)
    check_settings(store, "my_model", n_vectors=5, seed=0, recipe=PLAIN)
    # sanity units of resnet50 stored before any settings file: plain
    sanity = ResultStore(tmp_path, "sanity_cascading")
    sanity.write(("resnet50", "LRP a1b0", 0), [{"value": 1.0}])
    sanity.check_settings("resnet50", {"recipe": PLAIN}, defaults={"recipe": PLAIN})
    other = ResultStore(tmp_path / "other", "sanity_cascading")
    other.write(("resnet50", "LRP a1b0", 0), [{"value": 1.0}])
    with pytest.raises(ArgumentError, match="use another --out"):
        other.check_settings("resnet50", {"recipe": PAPER}, defaults={"recipe": PLAIN})


def test_merge_copies_settings_and_refuses_different_recipes(tmp_path):
    a, b = ResultStore(tmp_path / "a", "csc"), ResultStore(tmp_path / "b", "csc")
    for store in (a, b):
        check_settings(store, "resnet50", n_vectors=5, seed=0, recipe=PAPER)
        store.write(("resnet50", "LRP a1b0", 0 if store is a else 1), [{"value": 1.0}])
    merged = merge_stores([tmp_path / "a", tmp_path / "b"], tmp_path / "m", "csc")
    assert json.loads(merged.settings_path("resnet50").read_text())["recipe"] == PAPER
    assert len(list(merged.units_dir.glob("*.csv"))) == 2
    c = ResultStore(tmp_path / "c", "csc")
    check_settings(c, "resnet50", n_vectors=5, seed=0, recipe=PLAIN)
    with pytest.raises(ArgumentError, match="cannot merge csc"):
        merge_stores([tmp_path / "a", tmp_path / "c"], tmp_path / "m2", "csc")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_csc_and_reproduce_parse_recipe():
    run_csc, reproduce = _script("run_csc"), _script("reproduce")
    base = ["--network", "resnet50", "--out", "o"]
    assert run_csc.parse_args(base).recipe == PAPER
    assert run_csc.parse_args(base + ["--recipe", "plain"]).recipe == PLAIN
    assert reproduce.parse_args([]).recipe == PAPER
    assert reproduce.parse_args(["--recipe", "plain"]).recipe == PLAIN
    args = reproduce.parse_args(["--recipe", "plain", "--weights", "random"])
    assert reproduce.settings_from(args, ["cifar-net"]).recipe == PLAIN


@pytest.mark.parametrize("script", ["run_csc", "reproduce", "run_sanity_checks",
                                    "run_random_logit"])
def test_unknown_recipe_is_rejected_with_the_valid_names(script, capsys):
    module = _script(script)
    argv = ["--network", "resnet50", "--out", "o", "--recipe", "exact"]
    if script == "reproduce":
        argv = ["--recipe", "exact"]
    with pytest.raises(SystemExit) as exit_:
        (module.parse_args if hasattr(module, "parse_args") else module.main)(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--recipe: invalid choice: 'exact' (choose from 'paper', 'plain')" in err


@pytest.mark.parametrize("script", ["run_csc", "reproduce", "run_sanity_checks",
                                    "run_random_logit"])
def test_help_says_what_each_recipe_does(script, capsys):
    module = _script(script)
    with pytest.raises(SystemExit):
        (module.parse_args if hasattr(module, "parse_args") else module.main)(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--recipe {paper,plain}" in text
    assert "'paper': the paper's code: DeepLIFT uses deeplift's own max-pool rule" in text
    assert "[0, 1000]" in text and "DTD is left out" in text
    assert "'plain': no recipe changes" in text
