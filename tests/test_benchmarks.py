"""benchmarks/: every script imports cleanly (definitions only, nothing run), and the harness's step timer,
results file and Markdown table work on made-up rows. No benchmark is run and nothing is timed."""

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.stem != "harness")


def load(path: Path):
    """A benchmarks script as a module under its own name (its siblings importable, as when it runs)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmarks_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness():
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    import harness

    return harness


def _runs_code(node: ast.stmt) -> bool:
    """A top-level statement that does more than define: anything but a docstring, an import, a def or class,
    a constant assignment and the `if __name__ == "__main__":` guard."""
    if isinstance(
        node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    ):
        return False
    if (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ):
        return False
    return not (isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_is_definitions_only(path):
    code = [n for n in ast.parse(path.read_text()).body if _runs_code(n)]
    assert not code, f"{path.name} runs code at import: line(s) {[n.lineno for n in code]}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_imports_cleanly(path, capsys):
    results = sorted((BENCHMARKS / "results").iterdir())
    argv = list(sys.argv)
    module = load(path)
    assert callable(module.main), f"{path.name} has no main()"
    assert module.__doc__, f"{path.name} has no docstring (what it measures, how to run it)"
    assert capsys.readouterr() == ("", ""), f"{path.name} printed at import"
    assert sorted((BENCHMARKS / "results").iterdir()) == results and sys.argv == argv


def test_every_script_is_in_the_readme():
    readme = (BENCHMARKS / "README.md").read_text()
    missing = [p.name for p in [*SCRIPTS, *BENCHMARKS.glob("*.sh")] if f"`{p.name}`" not in readme]
    assert not missing, f"benchmarks/README.md does not list {missing}"


def test_harness_imports_neither_torch_nor_transformers():
    """The children whose memory prep.py and tokenizer.py measure import the harness too."""
    import subprocess

    probe = "import sys, harness; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=BENCHMARKS, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_markdown_table(harness):
    lines = harness.markdown_table(
        ["blocks", "tokens/s", "ratio", "share", "note"],
        [["BERT", 25176.7, 6.3172, 0.3581, None], ["ModernBERT", 812, 2.0, 0.0421, "ok"]],
    )
    assert lines == [
        "| blocks | tokens/s | ratio | share | note |",
        "|---|---|---|---|---|",
        "| BERT | 25,177 | 6.32 | 0.358 | - |",
        "| ModernBERT | 812 | 2.00 | 0.0421 | ok |",
    ]


def test_results_file_appends_rows_with_command_and_machine(harness, tmp_path):
    results = harness.Results("made-up", tmp_path, argv=[str(BENCHMARKS / "throughput.py"), "--quick"])
    path = results.write([{"preset": "tiny", "tokens_per_s": 1.5}, {"preset": "mini", "tokens_per_s": 0.5}])
    assert re.fullmatch(r"made-up-\d{8}\.jsonl", path.name) and path.parent == tmp_path
    assert results.write([{"preset": "small"}]) == path  # appended, same file
    rows = harness.read_jsonl([path])
    assert [r["preset"] for r in rows] == ["tiny", "mini", "small"] and rows[0]["tokens_per_s"] == 1.5
    for row in rows:
        assert row["command"] == "python benchmarks/throughput.py --quick"
        machine = row["machine"]
        for key in ("cpu", "cores", "torch_threads", "gpu", "torch", "transformers", "load_average"):
            assert key in machine
        assert len(machine["load_average"]) == 3 and len(machine["load_average_after"]) == 3
    assert harness.machine_line(rows[0]["machine"]).startswith(rows[0]["machine"]["cpu"])
    assert json.loads(path.read_text().splitlines()[0])["date"] == results.started


def test_write_jsonl_and_marked_section(harness, tmp_path):
    path = harness.write_jsonl("other", [{"a": 1}], tmp_path)
    assert harness.read_jsonl([path])[0]["a"] == 1
    md = tmp_path / "B.md"
    md.write_text("intro\n<!-- x:start -->\nold\n<!-- x:end -->\nafter\n")
    harness.write_marked_section(
        md, "<!-- x:start -->", "<!-- x:end -->", ["<!-- x:start -->", "new", "<!-- x:end -->"]
    )
    assert md.read_text() == "intro\n<!-- x:start -->\nnew\n<!-- x:end -->\nafter\n"


def test_step_timer_times_the_steps_after_skip(harness, monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(harness, "clock", lambda: next(clock))
    timer = harness.StepTimer(skip=2)
    state, control = SimpleNamespace(global_step=0, max_steps=6), SimpleNamespace(should_training_stop=False)
    timer.on_train_begin(None, state, control)
    for step in range(1, 7):  # one clock tick per step
        state.global_step = step
        timer.on_step_end(None, state, control)
    assert (timer.timed_steps, timer.elapsed, timer.seconds_per_step()) == (4, 4.0, 1.0)
    assert timer.tokens_per_second(4096) == 4096.0 and not control.should_training_stop
    timer.on_train_begin(None, state, control)  # a new train(): timed afresh
    assert timer.timed_steps == 0 and timer.first_step_at is None


def test_step_timer_stops_after_seconds(harness, monkeypatch):
    clock = iter(float(t) for t in range(100))
    monkeypatch.setattr(harness, "clock", lambda: next(clock))
    timer = harness.StepTimer(skip=1, seconds=3)
    state, control = (
        SimpleNamespace(global_step=0, max_steps=1000),
        SimpleNamespace(should_training_stop=False),
    )
    while not control.should_training_stop:
        state.global_step += 1
        timer.on_step_end(None, state, control)
    assert state.global_step == 4 and timer.elapsed == 3.0 and timer.first_step_at == 0.0


def test_throughput_table_puts_modernbert_first():
    throughput = load(BENCHMARKS / "throughput.py")

    def row(blocks, preset, ratio):
        return {"blocks": blocks, "preset": preset, "stock": throughput.STOCK[blocks], "stock_tokens_per_s": 1000.0,
                "tokens_per_s": 1000.0 * ratio, "ratio": ratio, "stock_model_flops_per_s": 2e9,
                "stock_share_of_peak": 0.1, "model_flops_per_s": 3e9, "share_of_peak": 0.15}  # fmt: skip

    lines = throughput.table(
        [row("bert", "tiny", 6.3), row("electra", "tiny", 1.8), row("modernbert", "mini", 2.5)]
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| ModernBERT", "| BERT", "| ELECTRA"]
    assert (
        "| BERT | tiny | BertForMaskedLM (full head) | 1,000 | 6,300 | **6.30x** | 2.0 GFLOP/s, 10.0% |"
        in lines[3]
    )


def test_throughput_quick_options():
    throughput = load(BENCHMARKS / "throughput.py")
    opts = throughput.parse_args(["--quick"])
    assert (opts.presets, opts.rounds, opts.steps, opts.threads, opts.vocab_size) == ("tiny", 1, 3, 2, 16384)
    full = throughput.parse_args([])
    assert (full.rounds, full.batch_size, full.seq_len, full.threads) == (3, 32, 128, 2)
    assert full.blocks.split(",") == ["modernbert", "bert", "electra"]
    with pytest.raises(SystemExit):
        throughput.parse_args(["--blocks", "gpt"])


def test_the_masking_studies_are_one_base_recipe_and_their_settings(tmp_path):
    """benchmarks/masking.py writes each study's recipe from recipes/masking_study.yaml: the same data and
    schedule, only the masking differs, and each plans as a valid recipe."""
    from mlm.recipe import RunConfig, plan_recipe

    masking = load(BENCHMARKS / "masking.py")
    paths = masking.study_recipes(masking.BASE, list(masking.STUDIES), tmp_path)
    plans = [plan_recipe(RunConfig(recipe=p)) for p in paths]
    pre = {p.name: p.configs["pretrain"] for p in plans}
    assert pre["masking_token_03"].mlm_probability == 0.3 and pre["masking_wwm_015"].whole_word_mask
    assert {(c.max_steps, c.learning_rate, c.preset) for c in pre.values()} == {(2500, 1e-3, "tiny")}
    assert len({p.configs["pack"].output_dir for p in plans}) == 1  # one shared set of blocks
