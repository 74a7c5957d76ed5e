"""What we save loads in the oldest transformers we promise (the card says `library_name: transformers`):
tokenizers, the pretrained masked LM and a fine-tuned classifier give the same ids and logits in a separate
virtual environment with `COMPAT_PINS` as in this one; ModernBERT checkpoints, whose architecture came later,
in one with `MODERNBERT_PINS` (their card names that release).

The environment is built once, under $MLM_TEST_CACHE (default ~/.cache/mlm-tests), with pip; where pip cannot
install the pins (offline, no wheel for this Python), the test is skipped and says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_run import tiny_pretrain_config

COMPAT_PINS = ["transformers==4.44.2", "tokenizers>=0.19,<0.20", "torch==2.13.0", "numpy<2.3", "safetensors"]
MODERNBERT_PINS = [
    "transformers==4.48.0",
    "tokenizers>=0.21,<0.22",
    "torch==2.13.0",
    "numpy<2.3",
    "safetensors",
]
TEXTS = ["The cat sat on the mat.", "Héllo WORLD, naïve café!", "a [MASK] of the world", ""]
PAIRS = [("good film", "bad night"), ("The first one.", "and the second")]

pytestmark = pytest.mark.slow


def cache_dir() -> Path:
    return Path(os.environ.get("MLM_TEST_CACHE") or Path.home() / ".cache" / "mlm-tests")


@pytest.fixture(scope="module")
def old_python() -> Path:
    return venv_python(COMPAT_PINS)


@pytest.fixture(scope="module")
def modernbert_python() -> Path:
    return venv_python(MODERNBERT_PINS)


def venv_python(pins: list[str]) -> Path:
    """The python of a venv with `pins` (built once; the test is skipped when pip cannot build it)."""
    venv = cache_dir() / ("compat-" + pins[0].split("==")[-1])
    python = venv / "bin" / "python"
    stamp = venv / ".mlm-compat-ok"
    if stamp.is_file() and stamp.read_text() == json.dumps(pins) and python.is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    if pip.returncode != 0:
        tail = " ".join((pip.stderr or pip.stdout).strip().splitlines()[-2:])
        pytest.skip(f"cannot build a venv with {' '.join(pins)} here (pip: {tail[:300]})")
    stamp.write_text(json.dumps(pins))
    return python


OLD_SIDE = textwrap.dedent(
    """
    import json, sys
    import torch, transformers
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

    spec = json.loads(sys.argv[1])
    out = {"version": transformers.__version__}
    for name, folder in spec["tokenizers"].items():
        tok = AutoTokenizer.from_pretrained(folder)
        out[name] = {"class": type(tok).__name__, "max": tok.model_max_length,
                     "ids": [tok(t)["input_ids"] for t in spec["texts"]],
                     "pairs": [dict(tok(a, b)) for a, b in spec["pairs"]]}
    tok = AutoTokenizer.from_pretrained(spec["mlm"])
    batch = tok(spec["texts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out["mlm_logits"] = AutoModelForMaskedLM.from_pretrained(spec["mlm"]).eval()(**batch).logits.tolist()
        tok = AutoTokenizer.from_pretrained(spec["classifier"])
        batch = tok(spec["texts"], padding=True, return_tensors="pt")
        model = AutoModelForSequenceClassification.from_pretrained(spec["classifier"]).eval()
        out["cls_logits"] = model(**batch).logits.tolist()
    out["labels"] = [p["label"] for p in pipeline("text-classification", model=spec["classifier"])(spec["texts"][:2])]
    print("RESULT " + json.dumps(out))
    """
)


def current_side(spec: dict) -> dict:
    """What this transformers gives for the same folders."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    out: dict = {}
    for name, folder in spec["tokenizers"].items():
        tok = AutoTokenizer.from_pretrained(folder)
        out[name] = {
            "ids": [tok(t)["input_ids"] for t in TEXTS],
            "pairs": [dict(tok(a, b)) for a, b in PAIRS],
        }
    with torch.no_grad():
        tok = AutoTokenizer.from_pretrained(spec["mlm"])
        batch = tok(TEXTS, padding=True, return_tensors="pt")
        out["mlm_logits"] = AutoModelForMaskedLM.from_pretrained(spec["mlm"]).eval()(**batch).logits
        tok = AutoTokenizer.from_pretrained(spec["classifier"])
        batch = tok(TEXTS, padding=True, return_tensors="pt")
        out["cls_logits"] = (
            AutoModelForSequenceClassification.from_pretrained(spec["classifier"]).eval()(**batch).logits
        )
    return out


def pretrain_and_classify(root: Path, packed_dir: Path, **overrides) -> tuple[str, str]:
    """A pretrained final/ (tiny_run's config with `overrides`) and a classifier fine-tuned from it."""
    import csv

    from mlm.finetune import FinetuneConfig, finetune
    from mlm.pretrain import pretrain

    pretrain(tiny_pretrain_config(packed_dir, root / "pretrain", **overrides))
    rows = [
        {"text": f"{w} film number {i}", "label": str(int(w == "good"))}
        for i in range(24)
        for w in ("good", "bad")
    ]
    with open(root / "train.csv", "w", newline="") as f:
        csv.DictWriter(f, ["text", "label"]).writeheader()
        csv.DictWriter(f, ["text", "label"]).writerows(rows)
    finetune(FinetuneConfig(model_name_or_path=str(root / "pretrain" / "final"), train_file=str(root / "train.csv"),
                            output_dir=str(root / "cls"), max_steps=2, max_seq_length=32, use_cpu=True,
                            disable_tqdm=True, class_names=["negative", "positive"]))  # fmt: skip
    return str(root / "pretrain" / "final"), str(root / "cls")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, packed_dir: Path, prepared_dir: Path) -> dict:
    """A pretrained final/, a classifier fine-tuned from it, and BPE / Unigram tokenizers, all saved here."""
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    root = tmp_path_factory.mktemp("compat")
    mlm, classifier = pretrain_and_classify(root, packed_dir)
    tokenizers = {"wordpiece": mlm, "classifier": classifier}
    for kind in ("bpe", "unigram"):
        train_tokenizer(TokenizerConfig(output_dir=str(root / kind), data_dir=str(prepared_dir), kind=kind,
                                        vocab_size=256))  # fmt: skip
        tokenizers[kind] = str(root / kind)
    return {"tokenizers": tokenizers, "mlm": mlm, "classifier": classifier, "texts": TEXTS, "pairs": PAIRS}


def run_old_side(python: Path, spec: dict) -> dict:
    """OLD_SIDE's results for `spec` in the venv of `python`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([str(python), "-c", OLD_SIDE, json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_oldest_transformers_loads_our_tokenizers_and_models_identically(
    old_python: Path, saved: dict
) -> None:
    import torch

    old = run_old_side(old_python, saved)
    assert old["version"] == "4.44.2"
    new = current_side(saved)
    expected_class = {"wordpiece": "BertTokenizerFast", "classifier": "BertTokenizerFast",
                      "bpe": "PreTrainedTokenizerFast", "unigram": "PreTrainedTokenizerFast"}  # fmt: skip
    for name in saved["tokenizers"]:
        assert old[name]["class"] == expected_class[name], name
        assert old[name]["ids"] == new[name]["ids"], name
        assert old[name]["pairs"] == new[name]["pairs"], name
    assert old["wordpiece"]["max"] == 32 and old["classifier"]["max"] == 32
    torch.testing.assert_close(torch.tensor(old["mlm_logits"]), new["mlm_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(old["cls_logits"]), new["cls_logits"], atol=1e-5, rtol=1e-5)
    assert set(old["labels"]) <= {"negative", "positive"}


def test_first_modernbert_transformers_loads_our_modernbert_identically(
    modernbert_python: Path, tmp_path_factory, packed_dir: Path
) -> None:
    """A ModernBERT masked LM and its classifier (mean pooling, our default) in transformers 4.48.0."""
    import torch

    root = tmp_path_factory.mktemp("compat-modernbert")
    small = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    mlm, classifier = pretrain_and_classify(
        root, packed_dir, architecture="modernbert", config_overrides=small
    )
    spec = {
        "tokenizers": {"wordpiece": mlm},
        "mlm": mlm,
        "classifier": classifier,
        "texts": TEXTS,
        "pairs": PAIRS,
    }
    old = run_old_side(modernbert_python, spec)
    assert old["version"] == "4.48.0"
    new = current_side(spec)
    assert old["wordpiece"]["ids"] == new["wordpiece"]["ids"]
    torch.testing.assert_close(torch.tensor(old["mlm_logits"]), new["mlm_logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(old["cls_logits"]), new["cls_logits"], atol=1e-5, rtol=1e-5)
    assert json.loads((Path(classifier) / "config.json").read_text())["classifier_pooling"] == "mean"
