"""The results store: atomic units, resume, shards and merge."""
import pandas as pd
import pytest

from csc_analyzers.experiments.store import (ResultStore, Shard, merge_stores, parse_shard,
                                             unit_filename)


def rows(key):
    method, image = key
    return [{"method": method, "image_id": image, "metric": "m", "value": image * 0.5}]


KEYS = [(m, i) for m in ["LRP-z", "Gradient"] for i in range(5)]


def test_write_resume_and_table(tmp_path):
    store = ResultStore(tmp_path, "csc")
    for key in KEYS[:3]:
        store.write(key, rows(key))
    assert store.pending(KEYS) == KEYS[3:]
    for key in store.pending(KEYS):
        store.write(key, rows(key))
    table = store.table(KEYS)
    assert list(zip(table.method, table.image_id)) == KEYS
    assert not list((tmp_path / "csc" / "units").glob("*.tmp"))


def test_shards_merged_equal_single_run(tmp_path):
    single = ResultStore(tmp_path / "single", "x")
    for key in KEYS:
        single.write(key, rows(key))
    for index in range(3):
        shard = Shard(index, 3)
        store = ResultStore(tmp_path / f"shard{index}", "x")
        for key in shard.select(KEYS):
            store.write(key, rows(key))
    merged = merge_stores([tmp_path / f"shard{i}" for i in range(3)], tmp_path / "merged", "x")
    pd.testing.assert_frame_equal(merged.table(KEYS), single.table(KEYS))
    a = (tmp_path / "single" / "x.csv")
    single.consolidate(sort_by=["method", "image_id"])
    merged.consolidate(sort_by=["method", "image_id"])
    assert a.read_bytes() == (tmp_path / "merged" / "x.csv").read_bytes()


def test_shards_partition_units():
    shards = [Shard(i, 4) for i in range(4)]
    taken = [key for s in shards for key in s.select(KEYS)]
    assert sorted(taken) == sorted(KEYS) and len(taken) == len(KEYS)


@pytest.mark.parametrize("spec", ["2/2", "-1/2", "a/b", "1", "0/0", "3/2"])
def test_bad_shard_specs(spec):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(spec)


def test_unit_filenames_distinct():
    assert unit_filename(("a/b", 1)) != unit_filename(("a_b", 1))


def test_a_store_with_old_metric_names_is_refused(tmp_path):
    from csc_analyzers.errors import ArgumentError
    from csc_analyzers.experiments.store import check_metric_names
    from csc_analyzers.report import _read

    old = ResultStore(tmp_path / "old", "random_logit")
    old.write(("tiny", "Gradient", 0), [{"method": "Gradient", "metric": "ssim", "value": 0.5},
                                        {"method": "Gradient", "metric": "spearman", "value": 0.1}])
    unit = old.path(("tiny", "Gradient", 0))
    with pytest.raises(ArgumentError, match=rf"{unit.name}.*'ssim'.*new --out"):
        old.pending([("tiny", "Gradient", 0), ("tiny", "Gradient", 1)])
    with pytest.raises(ArgumentError, match=unit.name):
        merge_stores([tmp_path / "old"], tmp_path / "merged", "random_logit")
    assert not (tmp_path / "merged" / "random_logit" / "units").exists() or \
        not list((tmp_path / "merged" / "random_logit" / "units").glob("*.csv"))
    old.consolidate()
    with pytest.raises(ArgumentError, match="random_logit.csv"):
        _read(tmp_path / "old", "random_logit.csv")
    new = ResultStore(tmp_path / "new", "random_logit")
    new.write(("tiny", "Gradient", 0), [{"metric": "ssim_paper", "value": 0.5},
                                        {"metric": "ssim_standard", "value": 0.4}])
    assert new.pending([("tiny", "Gradient", 0), ("tiny", "Gradient", 1)]) == \
        [("tiny", "Gradient", 1)]
    check_metric_names(pd.DataFrame({"value": [1.0]}), "a table without metrics")
