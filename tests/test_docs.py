"""The documents stay true to the repository.

- every raw output that README.md, BENCHMARKS.md and benchmarks/HISTORY.md cite (`benchmarks/results/...`,
  or `results/...` from inside benchmarks/) exists;
- every recipe and suite they (and CONTRIBUTING.md, recipes/README.md, suites/README.md) name loads and
  validates: `mlm.recipe.plan_recipe` + `check_plan` for recipes, `mlm.evaluate.suite.load_suite` for suites;
  one whose data is under ../shared/data is skipped when that is absent; the README's inline recipes too;
- every command shown in a README code block parses: an `mlm ...` line (also under `torchrun ... -m mlm`)
  with `mlm.cli.build_parser(COMMAND).parse_known_args` and no unknown option (or `--help` exits 0); a `make`
  line names targets of the Makefile;
- every link into a Markdown file's heading (`FILE.md#anchor`, in the documents and in the recipes' and
  suites' comments) reaches a heading of that file;
- every test named in CONTRIBUTING.md's guarantees exists, and its code-layout table names every module of
  `mlm` and `data_prep`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()

CITING = ["README.md", "BENCHMARKS.md", "benchmarks/HISTORY.md"]
NAMING = [*CITING, "CONTRIBUTING.md", "recipes/README.md", "suites/README.md"]


def _text(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


# --- raw outputs ----------------------------------------------------------------------------------------------


def _cited_results(rel: str) -> list[str]:
    """The `benchmarks/results/...` paths a document cites (from benchmarks/, `results/...` too), repo-relative."""
    text = _text(rel)
    found = re.findall(r"benchmarks/results/[\w.\-/]*", text)
    if rel.startswith("benchmarks/"):
        found += ["benchmarks/" + p for p in re.findall(r"(?<![\w/.])results/[\w.\-/]*", text)]
    return sorted({p.rstrip(".") for p in found})


@pytest.mark.parametrize("rel", CITING)
def test_every_cited_raw_output_exists(rel):
    cited = _cited_results(rel)
    assert cited or rel == "README.md", f"{rel} cites no raw output"
    missing = [p for p in cited if not (ROOT / p).exists()]
    assert not missing, f"{rel} cites raw outputs that are not in the repository: {missing}"


# --- recipes and suites ---------------------------------------------------------------------------------------


def _named(kind: str) -> list[str]:
    names = set()
    for rel in NAMING:
        for name in re.findall(rf"(?<![\w/.]){kind}/[\w.*/-]+\.yaml", _text(rel)):
            names |= {str(p.relative_to(ROOT)) for p in ROOT.glob(name)} if "*" in name else {name}
    return sorted(n for n in names if not n.startswith("recipes/accelerate/"))


def _needs_absent_shared_data(paths: list[str]) -> bool:
    """Whether one of these paths is under ../shared/data while that folder is absent."""
    return not SHARED_DATA.is_dir() and any("shared/data" in str(p) for p in paths)


def _local(spec: str) -> str | None:
    """The local path of a data spec (None for builtin:, hf: and globs), without an @SPLIT suffix."""
    if spec.startswith(("builtin:", "hf:")) or any(c in spec for c in "*?["):
        return None
    return spec


def test_the_documents_name_recipes_and_suites():
    assert "recipes/demo.yaml" in _named("recipes")
    assert "suites/imdb_sst2_cpu.yaml" in _named("suites")


@pytest.mark.parametrize("recipe", _named("recipes"))
def test_named_recipes_load_and_validate(recipe, monkeypatch):
    from mlm.recipe import RunConfig, check_plan, plan_recipe, recipe_inputs

    monkeypatch.chdir(ROOT)
    assert Path(recipe).is_file(), f"{recipe} is named in the documents but does not exist"
    run = RunConfig(recipe=recipe)
    plan = plan_recipe(run)
    inputs = [s for specs in recipe_inputs(run, plan).values() for s in specs if s != recipe]
    if _needs_absent_shared_data(inputs):
        pytest.skip(f"{recipe} reads ../shared/data, which is absent here")
    check_plan(plan)
    missing = [s for s in map(_local, inputs) if s and not Path(s).exists()]
    assert not missing, f"{recipe}: inputs not found: {missing}"


@pytest.mark.parametrize("suite", _named("suites"))
def test_named_suites_load_and_validate(suite, monkeypatch):
    from mlm.evaluate.suite import load_suite

    monkeypatch.chdir(ROOT)
    assert Path(suite).is_file(), f"{suite} is named in the documents but does not exist"
    if _needs_absent_shared_data([Path(suite).read_text(encoding="utf-8")]):
        pytest.skip(f"{suite} reads ../shared/data, which is absent here")
    loaded = load_suite(suite)
    assert loaded.tasks


def _code_blocks(rel: str, languages: tuple[str, ...]) -> list[str]:
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", _text(rel), flags=re.M | re.S)
    return [body for lang, body in blocks if lang in languages]


def _inline_recipes() -> list[str]:
    from mlm.recipe import STEPS, TOP_LEVEL_KEYS

    found = []
    for body in _code_blocks("README.md", ("yaml",)):
        data = yaml.safe_load(body)
        if isinstance(data, dict) and set(data) <= set(TOP_LEVEL_KEYS) and set(data) & set(STEPS):
            found.append(body)
    return found


def test_the_readme_recipes_validate(tmp_path, monkeypatch):
    from mlm.recipe import RunConfig, check_plan, plan_recipe

    recipes = _inline_recipes()
    assert recipes, "the README shows no recipe"
    monkeypatch.chdir(tmp_path)
    for i, body in enumerate(recipes):
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(body)
        check_plan(plan_recipe(RunConfig(recipe=str(path))))


# --- commands -------------------------------------------------------------------------------------------------


def _commands(rel: str) -> list[list[str]]:
    """Each shell command of the document's bash/sh/untyped code blocks, as tokens (continuations joined,
    comments dropped, `&&` / `;` / `|` chains split)."""
    commands = []
    for body in _code_blocks(rel, ("bash", "sh", "shell", "console", "")):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            if not line or line.startswith("#"):
                continue
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:  # not shell (an output tree, a listing)
                continue
            command: list[str] = []
            for token in tokens:
                if token in ("&&", ";", "|", "||"):
                    commands.append(command)
                    command = []
                else:
                    command.append(token)
            commands.append(command)
    return [c for c in commands if c]


def _mlm_argv(tokens: list[str]) -> list[str] | None:
    """The arguments of an `mlm` call in these tokens (`mlm ...`, `... -m mlm ...`), else None."""
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if tokens and Path(tokens[0]).name == "mlm":
        return tokens[1:]
    for i, token in enumerate(tokens[:-1]):
        if token == "-m" and tokens[i + 1] == "mlm":
            return tokens[i + 2 :]
    return None


def _make_targets() -> set[str]:
    text = _text("Makefile")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?![=])", text, flags=re.M))


def test_the_readme_shows_commands():
    commands = _commands("README.md")
    assert any(_mlm_argv(c) for c in commands)
    assert any(c[0] == "make" for c in commands)


@pytest.mark.parametrize(
    "tokens", [c for c in _commands("README.md") if _mlm_argv(c) is not None], ids=" ".join
)
def test_readme_mlm_commands_parse(tokens):
    from mlm.cli import COMMANDS, build_parser

    argv = _mlm_argv(tokens)
    assert argv, f"`{' '.join(tokens)}` names no command"
    command = argv[0]
    assert command in COMMANDS, f"`{' '.join(tokens)}`: unknown command {command!r}"
    parser = build_parser(command)
    if "--help" in argv or "-h" in argv:
        with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_:
            parser.parse_args(argv)
        assert exit_.value.code == 0
        return
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            _, unknown = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"`{' '.join(tokens)}` does not parse: {stderr.getvalue().strip()}")
    assert not unknown, f"`{' '.join(tokens)}`: unknown option(s) {unknown}"


def test_readme_make_targets_exist():
    targets = _make_targets()
    shown = [c for c in _commands("README.md") if c[0] == "make"]
    assert shown
    for tokens in shown:
        for word in tokens[1:]:
            if "=" in word or word.startswith("-"):
                continue
            assert word in targets, f"`{' '.join(tokens)}`: the Makefile has no target {word!r}"


# --- links into headings --------------------------------------------------------------------------------------


def _slugs(rel: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", _text(rel), flags=re.M | re.S)
    slugs: set[str] = set()
    for title in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in slugs:
            n += 1
            candidate = f"{slug}-{n}"
        slugs.add(candidate)
    return slugs


LINKING = [*NAMING, *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("recipes/*.yaml"))),
           *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("suites/*.yaml")))]  # fmt: skip


def _anchor_links(rel: str) -> list[tuple[str, str]]:
    """(target file, anchor) of each `FILE.md#anchor` and in-page `(#anchor)` link of a document."""
    text = _text(rel)
    here = (ROOT / rel).parent
    links = []
    for target, anchor in re.findall(r"([\w./-]*\w\.md)#([\w-]+)", text):
        path = (here / target).resolve()
        if not path.is_file():  # comments in recipes/suites name BENCHMARKS.md from the project root
            path = (ROOT / target).resolve()
        links.append((str(path.relative_to(ROOT)), anchor))
    if rel.endswith(".md"):
        links += [(rel, a) for a in re.findall(r"\]\(#([\w-]+)\)", text)]
    return links


@pytest.mark.parametrize("rel", LINKING)
def test_links_into_headings_resolve(rel):
    broken = [f"{target}#{anchor}" for target, anchor in _anchor_links(rel) if anchor not in _slugs(target)]
    assert not broken, f"{rel} links to headings that do not exist: {broken}"


def test_the_readme_links_each_result_to_benchmarks():
    links = [a for target, a in _anchor_links("README.md") if target == "BENCHMARKS.md"]
    assert len(links) >= 10, "the README's results table links each cell to its section of BENCHMARKS.md"


# --- CONTRIBUTING.md ------------------------------------------------------------------------------------------


def _section(rel: str, title: str) -> str:
    text = _text(rel)
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_every_guarantee_names_an_existing_test():
    tests = set()
    files = {str(p.relative_to(ROOT / "tests")) for p in (ROOT / "tests").rglob("test_*.py")}
    for path in (ROOT / "tests").rglob("*.py"):
        tests |= set(re.findall(r"def (test_\w+)", path.read_text(encoding="utf-8")))
    rows = [line for line in _section("CONTRIBUTING.md", "Guarantees").splitlines() if line.startswith("| ")]
    assert len(rows) > 10
    for row in rows[2:]:
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        for name in re.findall(r"`([^`]+)`", cell):
            if "::" in name:
                file, _, test = name.rpartition("::")
            else:  # a test file, or a test of the file named before it in the cell
                file, test = (name, "") if name.endswith(".py") else ("", name)
            if file:
                assert file in files, f"CONTRIBUTING.md names a test file that does not exist: {file}"
            if test.startswith("..."):
                assert any(t.endswith(test[3:]) for t in tests), f"no test ends with {test[3:]}"
            elif test:
                assert test in tests, f"CONTRIBUTING.md names a test that does not exist: {name}"


def _modules(package: str) -> set[str]:
    folder = ROOT / package
    names = {
        f"{package}/{p.name}" for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    }
    names |= {f"{package}/{p.name}" for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return names


def test_the_code_layout_names_every_module():
    named: set[str] = set()
    for row in _section("CONTRIBUTING.md", "How the code is laid out").splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split(" | ")[0]
        tokens = [t.rstrip("/") for t in re.findall(r"`([^`]+)`", first)]
        base = next(t.rsplit("/", 1)[0] for t in tokens if "/" in t)
        named |= {t if "/" in t else f"{base}/{t}" for t in tokens}
    actual = _modules("mlm") | _modules("data_prep")
    assert not actual - named, f"modules missing from CONTRIBUTING.md's layout: {sorted(actual - named)}"
    assert not named - actual, (
        f"CONTRIBUTING.md's layout names modules that do not exist: {sorted(named - actual)}"
    )
