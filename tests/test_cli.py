"""Bad input through the `mlm` command: one clear line naming the input, exit code 2, no traceback,
and no half-written output folder."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlm.cli import COMMANDS, build_parser, main, version

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pretrained_tiny_model(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A tiny random BertForMaskedLM saved with the tiny tokenizer: stands in for a pretrained checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-model")
    BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


def assert_no_output(folder: Path) -> None:
    assert not folder.exists(), f"{folder} was left behind"
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.tmp")]
    assert not leftovers, leftovers


def test_missing_corpus_path(tmp_path, capsys):
    out = tmp_path / "data"
    code, err = run_cli(["prepare", "--corpus", tmp_path / "nope.txt", "--output_dir", out], capsys)
    assert code == 2
    assert "error:" in err and "nope.txt" in err and "not found" in err
    assert_no_output(out)


def test_corpus_with_no_usable_text(tmp_path, capsys):
    corpus = tmp_path / "short.txt"
    corpus.write_text("a\nb\n\nc\n")
    out = tmp_path / "data"
    code, err = run_cli(["prepare", "--corpus", corpus, "--output_dir", out], capsys)
    assert code == 2 and "no usable text" in err and "short.txt" in err
    assert_no_output(out)


def test_binary_file(tmp_path, capsys):
    corpus = tmp_path / "blob.txt"
    corpus.write_bytes(b"hello\x00\x01\x02" * 50)
    out = tmp_path / "data"
    code, err = run_cli(["prepare", "--corpus", corpus, "--output_dir", out], capsys)
    assert code == 2 and "blob.txt" in err and "not a text file" in err
    assert_no_output(out)


def test_not_utf8_names_file_and_offset(tmp_path, capsys):
    corpus = tmp_path / "latin1.txt.gz"
    with gzip.open(corpus, "wb") as f:
        f.write(
            ("A perfectly fine first line of text.\nCaf\xe9 au lait is good for everyone.\n").encode(
                "latin-1"
            )
        )
    out = tmp_path / "data"
    code, err = run_cli(["prepare", "--corpus", corpus, "--output_dir", out], capsys)
    assert code == 2 and "latin1.txt.gz" in err and "UTF-8" in err and "offset" in err
    assert_no_output(out)
    # the option that allows it
    code, _ = run_cli(
        [
            "prepare",
            "--corpus",
            corpus,
            "--output_dir",
            out,
            "--encoding_errors",
            "replace",
            "--min_chars",
            "5",
        ],
        capsys,
    )
    assert code == 0 and out.is_dir()


def test_missing_text_column_lists_columns(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"body": "some text here that is long enough", "id": 1}) + "\n")
    out = tmp_path / "data"
    code, err = run_cli(["prepare", "--corpus", corpus, "--output_dir", out], capsys)
    assert code == 2 and "no column 'text'" in err and "body" in err and "id" in err
    assert_no_output(out)


def _labelled(tmp_path: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    path = tmp_path / name
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


def test_missing_label_column_and_unseen_label(tmp_path, capsys, pretrained_tiny_model):
    train = _labelled(tmp_path, "train.tsv", [("good film", "pos"), ("bad film", "neg")] * 4)
    dev = _labelled(tmp_path, "dev.tsv", [("odd film", "neutral")])
    out = tmp_path / "ft"
    base = [
        "finetune",
        "--model_name_or_path",
        pretrained_tiny_model,
        "--train_file",
        train,
        "--output_dir",
        out,
    ]
    code, err = run_cli([*base, "--text_column", "sentence", "--label_column", "stars"], capsys)
    assert code == 2 and "no column 'stars'" in err and "sentence" in err and "label" in err
    code, err = run_cli([*base, "--text_column", "sentence", "--validation_file", dev], capsys)
    assert code == 2 and "neutral" in err and "dev.tsv" in err
    assert_no_output(out)


def test_unknown_tokenizer_kind(tmp_path, capsys, prepared_dir):
    out = tmp_path / "tok"
    code, err = run_cli(
        ["train-tokenizer", "--data_dir", prepared_dir, "--output_dir", out, "--kind", "bytes"], capsys
    )
    assert code == 2 and "bytes" in err and "wordpiece" in err and "unigram" in err
    assert_no_output(out)


def test_unknown_preset(tmp_path, capsys, packed_dir):
    code, err = run_cli(
        ["pretrain", "--data_dir", packed_dir, "--output_dir", tmp_path / "p", "--preset", "xl"], capsys
    )
    assert code == 2 and "unknown preset 'xl'" in err and "tiny, mini" in err


def test_max_seq_length_too_large(tmp_path, capsys, prepared_dir, tiny_tokenizer_dir):
    out = tmp_path / "packed"
    args = ["pack", "--data_dir", prepared_dir, "--tokenizer_dir", tiny_tokenizer_dir, "--output_dir", out]
    code, err = run_cli([*args, "--max_seq_length", "4096"], capsys)
    assert code == 2 and "4096" in err
    assert_no_output(out)


def test_unknown_recipe_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("pretrain:\n  preset: tiny\n  learning_rat: 0.1\n")
    code, err = run_cli(["run", recipe], capsys)
    assert code == 2 and "learning_rat" in err and "learning_rate" in err and "r.yaml" in err
    recipe.write_text("pretrian:\n  preset: tiny\n")
    code, err = run_cli(["run", recipe], capsys)
    assert code == 2 and "pretrian" in err and "pretrain" in err


def test_real_process_exits_2_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlm", "prepare", "--corpus", str(tmp_path / "missing.jsonl"), "--output_dir",
         str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "missing.jsonl" in lines[-1]


def test_fill_mask_prints_top_predictions(capsys, pretrained_tiny_model):
    code = main(["fill-mask", str(pretrained_tiny_model), "the [MASK] of the world.", "--top_k", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 3
    assert all(float(line.split()[0]) >= 0 for line in out)
    code = main(["fill-mask", str(pretrained_tiny_model), "no mask here"])
    assert code == 2 and "has no [MASK]" in capsys.readouterr().err


def test_resume_flag_alone_means_latest():
    from mlm.cli import build_parser

    args = build_parser("pretrain").parse_args(
        ["pretrain", "--data_dir", "p", "--output_dir", "o", "--resume_from_checkpoint"]
    )
    assert args.resume_from_checkpoint == "latest"


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser(command).parse_args([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"mlm {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_has_an_example_the_required_options_and_each_flag_once(command: str, capsys) -> None:
    text = help_text(command, capsys)
    assert re.search(rf"example:\n  mlm {command} \S", text), text[-400:]
    listed = re.findall(r"^  (-\w, )?(--[\w-]+)", text, flags=re.M)
    flags = [flag for _, flag in listed]
    assert len(flags) == len(set(flags)) and "--quiet" in flags, flags
    assert not [f for f in flags if "-" in f[2:]], "--max-seq-length spellings are accepted, not listed"
    required = {"prepare": ["--corpus", "--output_dir"], "pack": ["--data_dir", "--tokenizer_dir", "--output_dir"],
                "pretrain": ["--data_dir", "--output_dir"], "finetune": ["--model_name_or_path", "--train_file", "--output_dir"],
                "train-tokenizer": ["--output_dir"], "evaluate": ["--suite"]}.get(command)  # fmt: skip
    if required:
        section = text.split("required:\n")[1].split("\n\n")[0]
        assert re.findall(r"^  (--\w+)", section, flags=re.M) == required, section
