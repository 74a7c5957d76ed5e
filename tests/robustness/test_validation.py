"""Everything validated up front, identity not size, damaged artefacts named: each case through the `mlm`
command, as the user meets it. A refusal is exit code 2 with exactly one `error:` line naming the input, no
traceback, and nothing written (no output folder; a run folder byte for byte as it was).

Most cases call the CLI entry point in this process (`mlm.cli.main`, which is what `python -m mlm` runs);
a few run a real `python -m mlm` process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_prep.tokenizer import tokenizer_fingerprint
from mlm.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
QUIET = ["--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none"]


# --- helpers ------------------------------------------------------------------------------------------------


def refused(capsys, args: list, *fragments: str) -> str:
    """Run `mlm ARGS`: exit code 2, one `error:` line holding every fragment, no traceback; the line."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def succeeds(capsys, args: list) -> str:
    """Run `mlm ARGS`: exit code 0; its standard output."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    return out.out


def real_process(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "mlm", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` by its sha256 (and every folder)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def pretrain_args(data_dir: Path, out: Path, *extra) -> list:
    return ["pretrain", "--data_dir", data_dir, "--output_dir", out, "--preset", "tiny",
            "--config_overrides", json.dumps(TINY), "--max_steps", 4, "--save_steps", 2, "--eval_steps", 0,
            "--per_device_train_batch_size", 8, "--max_eval_samples", 16, "--logging_steps", 1,
            *QUIET, *extra]  # fmt: skip


def write_labels(path: Path) -> Path:
    rows = [
        f"sentence {i} is about {'food' if i % 2 else 'rain'},{'food' if i % 2 else 'rain'}"
        for i in range(24)
    ]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def finetune_args(model: Path, train: Path, out: Path, *extra) -> list:
    return ["finetune", "--model_name_or_path", model, "--train_file", train, "--output_dir", out, "--max_seq_length", 32,
            "--num_train_epochs", 1, *QUIET, *extra]  # fmt: skip


# --- shared runs --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, packed_dir) -> Path:
    """A finished tiny pretraining run: checkpoint-2/, checkpoint-4/ and final/ (treat as read-only)."""
    out = tmp_path_factory.mktemp("run") / "pretrain"
    assert main([str(a) for a in pretrain_args(packed_dir, out)]) == 0
    assert (out / "checkpoint-4" / "mlm_step.json").is_file() and (out / "final" / "config.json").is_file()
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path) -> Path:
    """A copy of `run_dir` a test may resume, damage or start over."""
    copy = tmp_path / "pretrain"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory, prepared_dir, tiny_tokenizer_dir) -> Path:
    """Trained on the same data, the same kind and size as `tiny_tokenizer_dir`, but cased: another vocabulary."""
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("other") / "tok"
    tok = train_tokenizer(
        TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), vocab_size=512, lowercase=False)
    )
    from transformers import AutoTokenizer

    assert len(tok) == len(AutoTokenizer.from_pretrained(tiny_tokenizer_dir))
    return out


@pytest.fixture(scope="module")
def labels(tmp_path_factory) -> Path:
    return write_labels(tmp_path_factory.mktemp("labels") / "train.csv")


# --- 1. the whole recipe is validated before its first step -----------------------------------------------


def write_recipe(folder: Path, corpus: Path, labels: Path, **sections: dict) -> Path:
    """A recipe of every step on the tiny corpus; `sections` entries are merged into their sections."""
    recipe = {
        "name": "tiny",
        "output_dir": str(folder / "runs"),
        "prepare": {"corpus": [str(corpus)], "validation_size": 30},
        "tokenizer": {"vocab_size": 512},
        "pack": {"max_seq_length": 32},
        "pretrain": {
            "config_overrides": TINY,
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "save_steps": 2,
            "eval_steps": 0,
            "max_eval_samples": 16,
            "disable_tqdm": True,
            "use_cpu": True,
        },  # fmt: skip
        "finetune": {
            "train_file": str(labels),
            "test_file": str(labels),
            "max_seq_length": 32,
            "num_train_epochs": 1,
            "disable_tqdm": True,
            "use_cpu": True,
        },  # fmt: skip
    }
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values} if values is not None else None
    recipe = {k: v for k, v in recipe.items() if v is not None}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "section, values, fragment",
    [
        ("tokenizer", {"vocab_size": 10}, "vocab_size"),
        ("pretrain", {"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
        ("pretrain", {"mlm_probability": 1.5}, "mlm_probability"),
        ("pretrain", {"max_steps": True}, "max_steps"),  # YAML `true` is not 1 step
        ("pretrain", {"learning_rate": True}, "learning_rate"),
        ("pretrain", {"config_overrides": {**TINY, "num_attention_heads": 3}}, "num_attention_heads"),
        ("pack", {"max_seq_length": 1024}, "model_max_length"),  # longer than the tokenizer it trains
        (
            "finetune",
            {"max_seq_length": 4096},
            "max_position_embeddings",
        ),  # longer than the model it pretrains
        ("finetune", {"train_file": "no-such-labels.csv"}, "no-such-labels.csv"),  # an input that is missing
        ("finetune", {"optim": "adamw_nope"}, "optim"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_bad_value_anywhere_in_the_recipe_stops_it_before_the_first_step(
    tmp_path, capsys, tiny_corpus_dir, labels, section, values, fragment
):
    recipe = write_recipe(tmp_path, tiny_corpus_dir / "corpus.jsonl", labels, **{section: values})
    refused(capsys, ["run", recipe], "recipe.yaml", f"section '{section}'", fragment)
    assert not (tmp_path / "runs").exists()  # prepare never started


def test_a_recipe_that_is_not_utf8_is_one_error_line(tmp_path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: café\npretrain: {preset: tiny}\n".encode("latin-1"))
    proc = real_process(["run", recipe], cwd=tmp_path)
    assert_one_error_line(proc, "latin1.yaml", "not UTF-8", "offset 9")
    assert not (tmp_path / "runs").exists()


# --- 2. options: types, ranges and choices are one error line ------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--logging_steps", "0"),
        ("--max_eval_samples", "0"),
        ("--learning_rate", "-1"),
        ("--seed", "-1"),
        ("--optim", "adamw_nope"),
        ("--lr_scheduler_type", "sideways"),
        ("--report_to", "nowhere"),
        ("--max_steps", "true"),
        ("--config_overrides", '{"hidden_size": "big"}'),
        ("--config_overrides", '{"num_attention_heads": 0}'),
        ("--config_overrides", '{"hidden_dropout_prob": 2}'),
        ("--config_overrides", '{"hidden_act": "nope"}'),
    ],
)
def test_a_bad_pretraining_option_is_one_error_line(tmp_path, capsys, packed_dir, option, value):
    out = tmp_path / "p"
    line = refused(capsys, [*pretrain_args(packed_dir, out), option, value])
    name = option.lstrip("-") if option != "--config_overrides" else next(iter(json.loads(value)))
    assert name in line
    assert not out.exists()


@pytest.mark.parametrize(
    "option, value",
    [("--logging_steps", "0"), ("--learning_rate", "-1"), ("--seed", "-1"), ("--optim", "adamw_nope"),
     ("--lr_scheduler_type", "sideways")],
)  # fmt: skip
def test_a_bad_finetuning_option_is_one_error_line(tmp_path, capsys, run_dir, labels, option, value):
    out = tmp_path / "ft"
    refused(capsys, [*finetune_args(run_dir / "final", labels, out), option, value], option.lstrip("-"))
    assert not out.exists()


@pytest.mark.parametrize("command", ["pretrain", "finetune", "pack"])
def test_an_empty_tokenizer_folder_is_one_error_line(
    tmp_path, capsys, packed_dir, prepared_dir, run_dir, labels, command
):
    empty = tmp_path / "empty-tok"
    empty.mkdir()
    out = tmp_path / "out"
    args = {
        "pretrain": [*pretrain_args(packed_dir, out), "--tokenizer_dir", empty],
        "finetune": [*finetune_args(run_dir / "final", labels, out), "--tokenizer_name", empty],
        "pack": ["pack", "--data_dir", prepared_dir, "--tokenizer_dir", empty, "--output_dir", out],
    }[command]
    refused(capsys, args, str(empty))
    assert not out.exists()


# --- 3. identity, not size --------------------------------------------------------------------------------


def test_pretraining_refuses_a_tokenizer_of_the_same_size_from_another_run(
    tmp_path, capsys, packed_dir, tiny_tokenizer_dir, other_tokenizer
):
    out = tmp_path / "p"
    refused(capsys, [*pretrain_args(packed_dir, out), "--tokenizer_dir", other_tokenizer],
            str(other_tokenizer), str(packed_dir), str(tiny_tokenizer_dir.resolve()))  # fmt: skip
    assert not out.exists()
    # identity is what turns text into ids: a copy re-saved by transformers is the same tokenizer
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_tokenizer_dir).save_pretrained(tmp_path / "copy")
    assert tokenizer_fingerprint(tmp_path / "copy") == tokenizer_fingerprint(tiny_tokenizer_dir)
    assert tokenizer_fingerprint(other_tokenizer) != tokenizer_fingerprint(tiny_tokenizer_dir)
    packed = json.loads((packed_dir / "mlm_step.json").read_text())
    assert packed["inputs"]["tokenizer_fingerprint"] == tokenizer_fingerprint(tiny_tokenizer_dir)


def test_finetuning_refuses_a_tokenizer_other_than_the_models_own(
    tmp_path, capsys, run_dir, labels, other_tokenizer
):
    out = tmp_path / "ft"
    model = run_dir / "final"
    refused(capsys, [*finetune_args(model, labels, out), "--tokenizer_name", other_tokenizer],
            str(other_tokenizer), str(model))  # fmt: skip
    assert not out.exists()


# --- 4. reuse in `mlm run` sees content, not only names ------------------------------------------------------


def test_mlm_run_reruns_prepare_after_the_corpus_is_edited_in_place(tmp_path, capsys, tiny_texts):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in tiny_texts))
    recipe = tmp_path / "prep.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'runs'}\nprepare: {{corpus: [{corpus}], validation_size: 30}}\n"
    )
    assert "[prepare] running" in succeeds(capsys, ["run", recipe])
    assert "[prepare] unchanged" in succeeds(capsys, ["run", recipe])
    # one letter changed, same size, modification time put back: only the content tells
    stat = corpus.stat()
    text = corpus.read_text()
    corpus.write_text(text.replace("the", "thy", 1))
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert corpus.stat().st_size == stat.st_size and corpus.stat().st_mtime_ns == stat.st_mtime_ns
    assert "[prepare] running" in succeeds(capsys, ["run", recipe])


# --- 5. resuming with another config ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [("--learning_rate", "0.002"), ("--seed", "7"), ("--preset", "mini"), ("--per_device_train_batch_size", "4"),
     ("--mlm_probability", "0.3"), ("--whole_word_mask", "true"), ("--objective", "electra")],
)  # fmt: skip
def test_resuming_with_a_setting_that_changes_the_result_is_refused(
    capsys, packed_dir, run_copy, option, value
):
    before = snapshot(run_copy)
    line = refused(capsys, [*pretrain_args(packed_dir, run_copy), "--resume_from_checkpoint", option, value],
                   "checkpoint-4", option.lstrip("-"), "--force")  # fmt: skip
    assert "set them back" in line
    assert snapshot(run_copy) == before


def test_resuming_with_other_logging_saving_or_length_settings_is_allowed(capsys, packed_dir, run_copy):
    args = [*pretrain_args(packed_dir, run_copy), "--resume_from_checkpoint", "--logging_steps", "3", "--save_steps", "3",
            "--max_steps", "6", "--disable_tqdm", "false"]  # fmt: skip
    succeeds(capsys, args)
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-4") and metrics["steps"] == 6


def test_force_starts_over_replacing_the_old_checkpoints(capsys, packed_dir, run_copy):
    old = (run_copy / "checkpoint-4" / "model.safetensors").read_bytes()
    out = succeeds(capsys, [*pretrain_args(packed_dir, run_copy, "--save_steps", "3"), "--learning_rate", "0.002",
                            "--force"])  # fmt: skip
    assert "deleting 2 checkpoint(s)" in out
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["resumed_from"] is None and metrics["steps"] == 4
    assert sorted(p.name for p in run_copy.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert (run_copy / "checkpoint-4" / "model.safetensors").read_bytes() != old
    saved = json.loads((run_copy / "checkpoint-4" / "mlm_step.json").read_text())
    assert saved["config"]["learning_rate"] == 0.002


@pytest.fixture(scope="module")
def killed_recipe(tmp_path_factory, tiny_corpus_dir) -> Path:
    """A recipe (prepare to pretrain) whose pretraining was interrupted: checkpoints, no final/, no record."""
    folder = tmp_path_factory.mktemp("killed")
    recipe = write_recipe(folder, tiny_corpus_dir / "corpus.jsonl", folder / "unused.csv", finetune=None)
    assert main(["run", str(recipe)]) == 0
    pretrain = folder / "runs" / "pretrain"
    for name in ("final", "recipe_step.json", "metrics.json"):
        path = pretrain / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert (pretrain / "checkpoint-4").is_dir()
    return recipe


@pytest.mark.parametrize("change", [{"preset": "mini"}, {"learning_rate": 0.002, "seed": 7}])
def test_mlm_run_after_a_kill_with_a_changed_recipe_is_refused_up_front(
    tmp_path, capsys, killed_recipe, change
):
    recipe = tmp_path / "changed.yaml"
    data = yaml.safe_load(killed_recipe.read_text())
    data["pretrain"].update(change)
    recipe.write_text(yaml.safe_dump(data))
    runs = Path(data["output_dir"])
    before = snapshot(runs)
    refused(capsys, ["run", recipe], "section 'pretrain'", "checkpoint-4", *change, "--force")
    assert snapshot(runs) == before  # no step ran, no checkpoint touched


# --- 6. damaged artefacts are named ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, named",
    [
        ("truncate train/data-00000-of-00001.arrow", "train/data-00000-of-00001.arrow"),
        ("remove validation/data-00000-of-00001.arrow", "validation/data-00000-of-00001.arrow"),
        ("garble mlm_step.json", "mlm_step.json"),
        ("garble train/state.json", "train/state.json"),
    ],
)
def test_damaged_packed_data_is_named(tmp_path, capsys, packed_dir, damage, named):
    data = tmp_path / "packed"
    shutil.copytree(packed_dir, data)
    action, rel = damage.split(" ")
    if action == "truncate":
        cut_short(data / rel)
    elif action == "remove":
        (data / rel).unlink()
    else:
        (data / rel).write_text('{"cut short')
    out = tmp_path / "p"
    refused(capsys, pretrain_args(data, out), str(data / named))
    assert not out.exists()


def test_mlm_run_names_a_damaged_arrow_file_it_would_reuse(tmp_path, capsys, tiny_corpus_dir, labels):
    recipe = write_recipe(tmp_path, tiny_corpus_dir / "corpus.jsonl", labels, finetune=None)
    succeeds(capsys, ["run", recipe, "--steps", "prepare", "tokenizer", "pack"])
    shard = tmp_path / "runs" / "packed" / "train" / "data-00000-of-00001.arrow"
    cut_short(shard)
    out = succeeds(capsys, ["run", recipe, "--steps", "prepare", "tokenizer", "pack"])
    assert "[pack] unchanged" in out
    refused(capsys, ["run", recipe], str(shard), "damaged")
    assert not (tmp_path / "runs" / "pretrain" / "final").exists()


@pytest.mark.parametrize("command", ["finetune", "fill-mask", "evaluate"])
def test_a_truncated_model_is_named(tmp_path, capsys, run_dir, labels, command):
    model = tmp_path / "model"
    shutil.copytree(run_dir / "final", model)
    cut_short(model / "model.safetensors")
    out = tmp_path / "out"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump({"seeds": 1, "tasks": {"t": {"train": str(labels), "test": str(labels)}}})
    )
    args = {
        "finetune": finetune_args(model, labels, out),
        "fill-mask": ["fill-mask", model, "the [MASK] of it"],
        "evaluate": ["evaluate", model, "--suite", suite, "--output_dir", out],
    }[command]
    refused(capsys, args, str(model / "model.safetensors"), "cut short")
    assert not out.exists()


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
@pytest.mark.parametrize("command", ["finetune", "fill-mask"])
def test_a_model_file_that_is_not_json_is_named(tmp_path, capsys, run_dir, labels, name, command):
    model = tmp_path / "model"
    shutil.copytree(run_dir / "final", model)
    (model / name).write_text('{"vocab": {"the": 1')
    out = tmp_path / "out"
    args = finetune_args(model, labels, out) if command == "finetune" else ["fill-mask", model, "the [MASK]"]
    refused(capsys, args, str(model / name), "not valid JSON")
    assert not out.exists()


def test_resuming_from_a_truncated_checkpoint_is_named(capsys, packed_dir, run_copy):
    checkpoint = run_copy / "checkpoint-4"
    cut_short(checkpoint / "model.safetensors")
    before = snapshot(run_copy)
    refused(capsys, [*pretrain_args(packed_dir, run_copy), "--resume_from_checkpoint", checkpoint],
            str(checkpoint), "model.safetensors", "incomplete")  # fmt: skip
    assert snapshot(run_copy) == before


def test_fill_mask_on_a_run_folder_says_which_model_inside_to_use(tmp_path, run_dir):
    proc = real_process(["fill-mask", run_dir, "the [MASK] of it"], cwd=tmp_path)
    assert_one_error_line(proc, "pretraining run folder", str(run_dir / "final"), "checkpoint-4/")


def test_fill_mask_on_a_run_folder_without_final_names_its_checkpoints(tmp_path, capsys, run_copy):
    shutil.rmtree(run_copy / "final")
    refused(capsys, ["fill-mask", run_copy, "the [MASK] of it"], "checkpoint-2/", "checkpoint-4/")


def test_fill_mask_on_a_tokenizer_folder_says_it_has_no_model(capsys, tiny_tokenizer_dir):
    refused(capsys, ["fill-mask", tiny_tokenizer_dir, "the [MASK] of it"],
            str(tiny_tokenizer_dir), "tokenizer folder", "no model")  # fmt: skip
