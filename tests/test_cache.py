"""data_prep.cache: the one "reuse if unchanged" rule of recipes and `mlm evaluate`."""

from __future__ import annotations

from pathlib import Path

from data_prep import cache


def test_fingerprint_is_stable_and_order_free() -> None:
    a = cache.fingerprint({"config": {"lr": 1e-4, "epochs": 3}, "inputs": [Path("x")]})
    b = cache.fingerprint({"inputs": [Path("x")], "config": {"epochs": 3, "lr": 1e-4}})
    assert a == b and len(a) == 16
    assert cache.fingerprint({"config": {"lr": 1e-4, "epochs": 4}, "inputs": [Path("x")]}) != a


def test_lookup_finds_only_the_same_key(tmp_path: Path) -> None:
    record = tmp_path / "step.json"
    assert cache.lookup(record, "k1") is None and cache.read(record) is None
    cache.store(record, "k1", result={"accuracy": 0.5})
    assert cache.lookup(record, "k1") == {"fingerprint": "k1", "result": {"accuracy": 0.5}}
    assert cache.lookup(record, "k2") is None
    assert cache.read(record)["result"] == {"accuracy": 0.5}
    record.write_text("{not json")  # a record cut off while written is no record
    assert cache.lookup(record, "k1") is None and cache.read(record) is None
