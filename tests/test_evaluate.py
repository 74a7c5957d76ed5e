"""`mlm evaluate` on a tiny generated suite, and the pretraining time budget / kept checkpoints it relies on."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import yaml

from data_prep.errors import UserError
from mlm.cli import main as cli_main
from mlm.evaluate import EvaluateConfig, evaluate, load_suite, parse_fractions, summarize
from mlm.pretrain import PretrainConfig, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import tiny_pretrain_config  # noqa: E402

WORDS = "the a film movie story plot actor scene was is it this very long short day night music".split()


def _pretrain_cfg(packed_dir: Path, out: Path, **kw) -> PretrainConfig:
    """Keeps every checkpoint (for the pretraining curve), no evaluation during training."""
    base = dict(eval_steps=0, save_total_limit=None, max_eval_samples=16)
    return tiny_pretrain_config(packed_dir, out, **{**base, **kw})


@pytest.fixture(scope="module")
def pretrain_run(packed_dir, tmp_path_factory) -> Path:
    """A 6-step pretraining run that keeps checkpoint-3 and checkpoint-6 (save_total_limit: null keeps all)."""
    out = tmp_path_factory.mktemp("pre") / "run"
    pretrain(_pretrain_cfg(packed_dir, out))
    return out


def _sentence(rng: random.Random, marker: str) -> str:
    words = rng.choices(WORDS, k=rng.randint(3, 7))
    words.insert(rng.randint(0, len(words)), marker)
    return " ".join(words)


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    """Two tasks: sentiment (CSV train, JSONL dev, header-less TSV test) and a TREC-like 'COARSE:fine text'."""
    d = tmp_path_factory.mktemp("suite")
    rng = random.Random(0)
    (d / "data").mkdir()

    def senti(n):
        rows = []
        for _ in range(n):
            label = rng.choice(["pos", "neg"])
            rows.append((_sentence(rng, "good" if label == "pos" else "bad"), label))
        return rows

    train = senti(80)
    (d / "data" / "train.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in train))
    (d / "data" / "dev.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in senti(20))
    )
    (d / "data" / "test.tsv").write_text("".join(f"{t}\t{y}\n" for t, y in senti(20)))
    coarse = {"NUM": ["count", "dist"], "LOC": ["city", "other"], "HUM": ["ind", "gr"]}

    def trec(n):
        lines = []
        for _ in range(n):
            c = rng.choice(sorted(coarse))
            lines.append(f"{c}:{rng.choice(coarse[c])} {_sentence(rng, c.lower())}")
        return "\n".join(lines) + "\n"

    (d / "data" / "trec_train.label").write_text(trec(60), encoding="latin-1")
    (d / "data" / "trec_test.label").write_text(trec(20), encoding="latin-1")
    suite = {
        "name": "tiny",
        "seeds": 2,
        "label_fractions": [0.25, 1.0],
        "finetune": {"learning_rate": 2e-3, "num_train_epochs": 2, "per_device_train_batch_size": 16},
        "tasks": {
            "senti": {
                "max_seq_length": 32,
                "train": "data/train.csv",
                "dev": "data/dev.jsonl",
                "test": {"path": "data/test.tsv", "column_names": ["text", "label"]},
            },
            "trec": {
                "max_seq_length": 32,
                "metrics": ["accuracy", "f1_macro"],
                "delimiter": " ",
                "column_names": ["label", "text"],
                "encoding": "latin-1",
                "label_transform": "before_colon",
                "train": "data/trec_train.label",
                "test": "data/trec_test.label",
            },
        },
    }
    path = d / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def evaluated(pretrain_run, suite_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    cfg = EvaluateConfig(
        model=str(pretrain_run),
        suite=str(suite_file),
        output_dir=str(out),
        seeds_at_full=1,
        curve_tasks=["senti"],
    )
    return out, evaluate(cfg, log=lambda *a: None)


def test_results_structure_and_files(evaluated):
    out, results = evaluated
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(results["rows"]))
    assert saved["label_fractions"] == [0.25, 1.0]
    assert saved["seeds"] == [0, 1] and saved["seeds_at_full"] == [0]
    for name in (
        "results.png",
        "label_efficiency.png",
        "pretraining_curve.png",
        "results.md",
        "mlm_step.json",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    main = [r for r in results["rows"] if not r["intermediate"]]
    keys = {(r["task"], r["split"], r["method"], r["label_fraction"]) for r in main}
    for method in ("pretrained", "scratch", "tfidf"):
        for f in (0.25, 1.0):
            assert ("senti", "dev", method, f) in keys
            assert ("senti", "test", method, f) in keys
            assert ("trec", "test", method, f) in keys
    assert not any(r["task"] == "trec" and r["split"] == "dev" for r in main)
    md = (out / "results.md").read_text()
    assert "| senti | dev | accuracy |" in md and "f1_macro" in md


def test_median_spread_and_subset_sizes(evaluated):
    _, results = evaluated
    rows = [r for r in results["rows"] if not r["intermediate"]]
    r = next(
        r
        for r in rows
        if (r["task"], r["split"], r["method"], r["label_fraction"]) == ("senti", "dev", "pretrained", 0.25)
    )
    s = r["metrics"]["accuracy"]
    assert len(s["values"]) == 2 and r["seeds"] == [0, 1]
    assert s["min"] <= s["median"] <= s["max"] and s["median"] == pytest.approx(sum(s["values"]) / 2)
    assert r["train_samples"] == 20  # 25 % of 80, stratified
    full = next(r for r in rows if (r["task"], r["method"], r["label_fraction"]) == ("senti", "scratch", 1.0))
    assert full["train_samples"] == 80 and full["seeds"] == [0]
    trec = next(r for r in rows if (r["task"], r["method"], r["label_fraction"]) == ("trec", "tfidf", 0.25))
    assert trec["train_samples"] == 15 and set(trec["metrics"]) == {"accuracy", "f1_macro"}
    labels = json.loads((Path(evaluated[0]) / "data" / "trec" / "evaluate_data.json").read_text())["labels"]
    assert labels == ["HUM", "LOC", "NUM"]  # coarse label: the part before ':'
    assert summarize([0.5, 0.7, 0.6]) == {
        "median": 0.6,
        "min": 0.5,
        "max": 0.7,
        "std": pytest.approx(0.0816, abs=1e-3),
        "values": [0.5, 0.7, 0.6],
    }


def test_checkpoint_curve(evaluated, pretrain_run):
    _, results = evaluated
    assert [c["name"] for c in results["checkpoints"]] == ["checkpoint-3", "final"]  # checkpoint-6 == final
    assert results["checkpoints"][0]["tokens_seen"] == 3 * 8 * 32
    curve = [r for r in results["rows"] if r["intermediate"]]
    assert {(r["task"], r["checkpoint"], r["label_fraction"]) for r in curve} == {
        ("senti", "checkpoint-3", 0.25)
    }
    assert all(r["method"] == "pretrained" and len(r["seeds"]) == 2 for r in curve)


def test_rerun_reuses_finished_runs(evaluated, pretrain_run, suite_file):
    out, first = evaluated
    cfg = EvaluateConfig(
        model=str(pretrain_run / "final"),
        suite=str(suite_file),
        output_dir=str(out),
        seeds_at_full=1,
        tasks=["senti"],
        label_fractions=["1.0"],
        no_tfidf=True,
    )
    again = evaluate(cfg, log=lambda *a: None)
    assert again["runtime_s"] < 5

    def same(rows):
        return [r["metrics"] for r in rows if r["label_fraction"] == 1.0 and r["method"] != "tfidf"]

    assert same(again["rows"]) == same(
        [r for r in first["rows"] if r["task"] == "senti" and not r["intermediate"]]
    )


def test_progress_is_one_line_per_run(pretrain_run, suite_file, tmp_path, capfd):
    """By default one line per run: no Trainer log dicts, no model-load report; verbose shows them."""
    cfg = EvaluateConfig(
        model=str(pretrain_run / "final"),
        suite=str(suite_file),
        output_dir=str(tmp_path / "out"),
        seeds=1,
        tasks=["trec"],
        label_fractions=["1.0"],
        no_scratch=True,
    )
    evaluate(cfg)
    out, err = capfd.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("[evaluate] run ")]
    assert [line.split(":")[0] for line in lines] == [
        "[evaluate] run 1/2 task trec, pretrained, 100% labels, seed 0",
        "[evaluate] run 2/2 task trec, tfidf, 100% labels, seed 0",
    ]
    assert "test accuracy=" in lines[0] and "ETA" in lines[0]
    assert "{'loss':" not in out and "LOAD REPORT" not in out + err
    cfg.verbose, cfg.force = True, True
    evaluate(cfg)
    out, err = capfd.readouterr()
    assert "{'loss':" in out


def test_bad_suites(tmp_path, suite_file, pretrain_run):
    good = yaml.safe_load(suite_file.read_text())

    def check(data, match):
        p = suite_file.parent / "bad.yaml"
        p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
        with pytest.raises(UserError, match=match):
            load_suite(p)

    check({**good, "taks": {}}, "unknown key")
    check({**good, "tasks": {}}, "tasks")
    check({**good, "finetune": {"num_train_epochs": 300}}, "num_train_epochs")
    check({**good, "tasks": {"x": {"train": "nope.csv", "dev": "nope.csv"}}}, "not found")
    check({**good, "tasks": {"x": {"train": str(suite_file)}}}, "dev")
    check({**good, "tasks": {"x": {**good["tasks"]["trec"], "label_transform": "upper"}}}, "label_transform")
    check({**good, "tasks": {"x": {**good["tasks"]["trec"], "metrics": ["auc"]}}}, "auc")
    check("tasks: [unclosed", "YAML|tasks")
    # the same one-line errors as recipes: wrong types, unknown keys at every level, missing required keys
    check({**good, "seeds": "many"}, "'seeds' should be an integer")
    check({**good, "finetune": {"seed": 1}}, "finetune: seed is set by each run")
    check(
        {**good, "finetune": {"learning_rat": 1e-3}}, r"finetune: unknown key.*did you mean learning_rate\?"
    )
    check({**good, "tasks": {"x": {**good["tasks"]["trec"], "text_colum": "t"}}}, "did you mean text_column")
    trec = good["tasks"]["trec"]
    check({**good, "tasks": {"x": {**trec, "train": {"file": "a.csv"}}}}, "train: unknown key")
    check({**good, "tasks": {"x": {**trec, "test": {"encoding": "utf-8"}}}}, "missing.*path")
    check({k: v for k, v in good.items() if k != "tasks"}, "missing required key.*tasks")
    with pytest.raises(UserError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="got 2"):
        parse_fractions(["0.01,2"], "label_fractions")
    with pytest.raises(UserError, match="unknown task"):
        evaluate(
            EvaluateConfig(
                model=str(pretrain_run), suite=str(suite_file), tasks=["nope"], output_dir=str(tmp_path / "o")
            )
        )
    assert cli_main(["evaluate", str(tmp_path / "nothing"), "--suite", str(suite_file)]) == 2


def test_time_budget_fits_schedule(packed_dir, tmp_path, monkeypatch):
    """max_time_minutes: steps fitted to the (fake) measured step time, the run ends at the deadline."""
    from mlm.pretrain import TimeBudget

    # measure after 4 steps and refit every 2 (the defaults, 20 and 25, suit real runs, not a 4-second one)
    monkeypatch.setattr(TimeBudget, "CALIBRATE", 4)
    monkeypatch.setattr(TimeBudget, "REFIT", 2)
    monkeypatch.setattr(TimeBudget, "SKIP", 1)
    import itertools

    import mlm.pretrain as pretrain_module

    # a clock that advances 0.25 s per reading: the step count depends on the code, not on machine load
    ticks = itertools.count()
    monkeypatch.setattr(pretrain_module.time, "perf_counter", lambda: next(ticks) * 0.25)
    out = tmp_path / "timed"
    budget_s = 4.0
    metrics = pretrain(
        _pretrain_cfg(
            packed_dir, out, max_time_minutes=budget_s / 60, max_steps=3, save_steps=0, logging_steps=1,
            save_total_limit=2, learning_rate=1e-3,
        )
    )  # fmt: skip
    assert 6 < metrics["steps"] <= 16  # max_steps (3) is overridden by the budget of 16 clock readings
    history = json.loads((out / "log_history.json").read_text())
    assert 0 < max(h["learning_rate"] for h in history if "learning_rate" in h) <= 1e-3
    with pytest.raises(UserError, match="max_time_minutes"):
        PretrainConfig(data_dir="x", output_dir="y", max_time_minutes=0).validate()


def _budget_run(monkeypatch, step_seconds) -> tuple[object, list[float], float]:
    """TimeBudget (1000 s, linear, 10% warmup) over a fake clock advancing `step_seconds(step)` a step:
    the final TrainerState, the learning rate of each step, and the clock at the end."""
    import torch
    from transformers import TrainerControl, TrainerState, TrainingArguments, get_scheduler

    import mlm.pretrain as pretrain_module
    from mlm.pretrain import TimeBudget

    clock = [0.0]
    monkeypatch.setattr(pretrain_module.time, "perf_counter", lambda: clock[0])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler("linear", opt, num_warmup_steps=10**5, num_training_steps=10**7)
    args = TrainingArguments(output_dir="unused", save_strategy="no", report_to="none", use_cpu=True)
    state, control = TrainerState(max_steps=TimeBudget.MAX_STEPS), TrainerControl()
    cb = TimeBudget(1000.0, "linear", 0.1)
    cb.on_train_begin(args, state, control, lr_scheduler=sched)
    lrs = []
    while not control.should_training_stop and state.global_step < state.max_steps:
        clock[0] += step_seconds(state.global_step)
        opt.step()
        sched.step()
        state.global_step += 1
        lrs.append(opt.param_groups[0]["lr"])
        cb.on_step_end(args, state, control)
    return state, lrs, clock[0]


def test_time_budget_schedule_with_a_fake_clock(monkeypatch):
    """1 s per step and a 1000 s budget: ~1000 steps, warmup then linear decay to ~0, stop at the deadline."""
    state, lrs, _ = _budget_run(monkeypatch, lambda step: 1.0)
    assert 998 <= state.global_step <= 1000 and state.max_steps == state.global_step
    peak = lrs.index(max(lrs))
    assert 95 <= peak <= 105 and max(lrs) == pytest.approx(1.0, abs=0.05)  # warmup: 10% of the fitted steps
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))  # then decays monotonically
    assert lrs[-1] < 0.01
    # the first fit (step 20) replaces a guessed 2000-step schedule: a small step up within the warmup
    assert all(b - a < 0.15 for a, b in zip(lrs, lrs[1:]))


def test_incomplete_checkpoints_are_not_scored(pretrain_run, tmp_path):
    import shutil

    from mlm.checkpoints import COMPLETE_FILE
    from mlm.evaluate import resolve_models

    run = tmp_path / "run"
    shutil.copytree(pretrain_run, run)
    main, others = resolve_models(str(run))
    assert main.name == "final" and [c.name for c in others] == ["checkpoint-3"]
    assert (run / "checkpoint-3" / COMPLETE_FILE).is_file()
    weights = next((run / "checkpoint-3").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # cut off while saving
    main, others = resolve_models(str(run))
    assert main.name == "final" and others == []


def test_suite_takes_hub_and_builtin_specs(tmp_path):
    from mlm.evaluate import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n  demo:\n    train: builtin:pydocs@train\n    test: hf:someone/data@test\n"
    )
    task = load_suite(suite).tasks[0]
    assert (
        task.files["train"].path == "builtin:pydocs@train"
        and task.files["test"].path == "hf:someone/data@test"
    )


def test_time_budget_schedule_ends_at_zero_when_steps_slow_down(monkeypatch):
    """Steps that get slower late in the run (a busy machine): the learning rate still reaches zero at the
    last step the budget allows, not at a step count predicted earlier."""
    state, lrs, clock = _budget_run(monkeypatch, lambda step: 1.0 if step < 600 else 3.0)  # 3x slower late
    assert clock <= 1000.0 + 3.0 and state.max_steps == state.global_step  # at most one step past
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)  # the scheduler stepped to the end of its schedule


def test_a_hub_id_is_a_model_like_for_every_other_command(tmp_path, monkeypatch):
    from mlm.evaluate.models import resolve_models

    monkeypatch.chdir(tmp_path)  # no folder of that name here
    main, others = resolve_models("someone/tiny-bert")
    assert (main.path, main.name, others) == ("someone/tiny-bert", "someone/tiny-bert", [])
    with pytest.raises(UserError, match="model not found: no/such/thing"):
        resolve_models("no/such/thing")  # not a folder, and not a Hub id
