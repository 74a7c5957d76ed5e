"""`mlm run RECIPE.yaml`: run the steps a recipe names, reusing finished steps whose inputs are unchanged."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep import cache
from data_prep.errors import UserError
from data_prep.outputs import output_folder
from mlm.config import config_from_dict, load_yaml

STEPS = ("prepare", "tokenizer", "pack", "pretrain", "finetune", "report")
FINGERPRINT_FILE = "recipe_step.json"


@dataclass
class RunConfig:
    """Top-level recipe keys (also the options of `mlm run`)."""

    recipe: str = field(default="", metadata={"help": "the YAML recipe to run"})
    output_dir: str | None = field(
        default=None, metadata={"help": "folder for every step (default: runs/NAME)"}
    )
    steps: list[str] = field(
        default_factory=list,
        metadata={"help": f"run only these steps (default: all the recipe has): {', '.join(STEPS)}"},
    )
    force: bool = field(default=False, metadata={"help": "rerun steps even when their inputs are unchanged"})

    def validate(self) -> None:
        bad = [s for s in self.steps if s not in STEPS]
        if bad:
            raise UserError(f"unknown step(s) {', '.join(bad)}; valid steps: {', '.join(STEPS)}")


@dataclass
class ReportConfig:
    """The `report:` section: what the fine-tuning step compares (with `mlm evaluate`'s engine)."""

    compare_from_scratch: bool = field(
        default=True, metadata={"help": "also fine-tune the same architecture from random initialisation"}
    )
    tfidf_baseline: bool = field(default=True, metadata={"help": "also score TF-IDF + logistic regression"})
    label_fractions: list[str] = field(
        default_factory=lambda: ["1.0"],
        metadata={"help": "shares of the training labels to fine-tune on, e.g. 0.1,1.0 (stratified, seeded)"},
    )
    seeds: int = field(default=1, metadata={"help": "fine-tuning seeds per method and label fraction"})

    def validate(self) -> None:
        from mlm.evaluate.config import parse_fractions

        parse_fractions(self.label_fractions, "report: label_fractions")
        if self.seeds < 1:
            raise UserError(f"report: seeds must be >= 1, got {self.seeds}")


TOP_LEVEL_KEYS = ("name", "description", "output_dir", *STEPS)


def _step_classes() -> dict[str, type]:
    from data_prep.packing import PackConfig
    from data_prep.prepare import PrepareConfig
    from data_prep.tokenizer import TokenizerConfig
    from mlm.finetune import FinetuneConfig
    from mlm.pretrain import PretrainConfig

    return {
        "prepare": PrepareConfig,
        "tokenizer": TokenizerConfig,
        "pack": PackConfig,
        "pretrain": PretrainConfig,
        "finetune": FinetuneConfig,
        "report": ReportConfig,
    }


@dataclass
class Plan:
    """A recipe resolved into step configs, with each step's folder filled in."""

    name: str
    output_dir: Path
    configs: dict[str, Any]
    path: Path


def plan_recipe(run: RunConfig) -> Plan:
    """Read the recipe and fill in the folders that link its steps together."""
    data = load_yaml(run.recipe)
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise UserError(
            f"{run.recipe}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = str(data.get("name") or Path(run.recipe).stem)
    out = Path(run.output_dir or data.get("output_dir") or f"runs/{name}")
    classes = _step_classes()
    sections = {s: dict(data.get(s) or {}) for s in STEPS if s in data}
    if not sections:
        raise UserError(f"{run.recipe}: the recipe names no step; sections are {', '.join(STEPS)}")

    def default(section: str, key: str, value: Any) -> None:
        if section in sections and key in {f.name for f in dataclasses.fields(classes[section])}:
            sections[section].setdefault(key, value)

    default("prepare", "output_dir", str(out / "data"))
    default("tokenizer", "data_dir", sections.get("prepare", {}).get("output_dir"))
    default("tokenizer", "output_dir", str(out / "tokenizer"))
    default("pack", "data_dir", sections.get("prepare", {}).get("output_dir"))
    if "tokenizer" not in sections:  # continued pretraining: pack with the starting checkpoint's tokenizer
        default("pack", "tokenizer_dir", sections.get("pretrain", {}).get("model_name_or_path"))
    default("pack", "tokenizer_dir", sections.get("tokenizer", {}).get("output_dir"))
    default("pack", "output_dir", str(out / "packed"))
    default("pretrain", "data_dir", sections.get("pack", {}).get("output_dir"))
    default("pretrain", "output_dir", str(out / "pretrain"))
    default("pretrain", "resume_from_checkpoint", "auto")
    if "pretrain" in sections:
        default("finetune", "model_name_or_path", str(Path(sections["pretrain"]["output_dir"]) / "final"))
    default("finetune", "output_dir", str(out / "finetune"))
    if "pretrain" in sections or "finetune" in sections:
        sections.setdefault("report", {})
    configs = {s: config_from_dict(classes[s], sections[s], f"{run.recipe}: section '{s}'") for s in sections}
    return Plan(name=name, output_dir=out, configs=configs, path=Path(run.recipe))


# --- checks of the whole recipe, before any step runs -------------------------------------------------------


def check_plan(plan: Plan) -> None:
    """Every value of every step (types were checked when the configs were filled), and what the steps must
    agree on, before anything runs: a mistake in the last section never costs the minutes of the first ones.
    Inputs that earlier steps will make are not looked for here (each step checks its own when it starts)."""
    for step, cfg in plan.configs.items():
        _in_section(plan, step, cfg.validate)
    _in_section(plan, "pack", lambda: _check_sequence_lengths(plan))
    if "finetune" in plan.configs:
        _in_section(plan, "finetune", lambda: check_finetune_section(plan.configs["finetune"]))
    positions = _in_section(plan, "pretrain", lambda: _model_positions(plan))
    _in_section(plan, "finetune", lambda: _check_finetune_length(plan, positions))


def _in_section(plan: Plan, step: str, check: Callable[[], Any]) -> Any:
    """Run `check` (and return what it returns); its UserError is reported as one line naming the recipe and
    the section."""
    try:
        return check()
    except UserError as e:
        message = str(e).removeprefix(f"{step}: ")
        raise UserError(f"{plan.path}: section '{step}': {message}") from None


def _made_here(plan: Plan, step: str, other: str, path: str | None) -> bool:
    """`path` is (or is inside) the output folder of step `other` of this recipe, which runs before `step`."""
    out = getattr(plan.configs.get(other), "output_dir", None)
    if not out or not path or STEPS.index(other) >= STEPS.index(step):
        return False
    path_, out_ = Path(str(path)).resolve(), Path(out).resolve()
    return path_ == out_ or out_ in path_.parents


def _check_sequence_lengths(plan: Plan) -> None:
    """The blocks fit the tokenizer this recipe trains."""
    pack, tok = plan.configs.get("pack"), plan.configs.get("tokenizer")
    if pack and tok and _made_here(plan, "pack", "tokenizer", pack.tokenizer_dir):
        if pack.max_seq_length > tok.model_max_length:
            raise UserError(
                f"max_seq_length {pack.max_seq_length} is longer than the model_max_length "
                f"{tok.model_max_length} of the tokenizer section"
            )


def _model_positions(plan: Plan) -> int | None:
    """The positions of the model the pretrain section builds, checked to take the blocks this recipe packs
    (None without a pretrain section, or when it starts from a checkpoint, which has its own shape)."""
    from mlm.modeling import build_config

    pre, pack = plan.configs.get("pretrain"), plan.configs.get("pack")
    if pre is None or pre.model_name_or_path:
        return None
    seq = pack.max_seq_length if pack and _made_here(plan, "pretrain", "pack", pre.data_dir) else 8
    # a stand-in vocabulary of 64 (with special ids inside it): only the position count is read
    config = build_config(pre.preset, 64, seq, overrides=pre.config_overrides,
                          attn_implementation=pre.attn_implementation, architecture=pre.architecture,
                          cls_token_id=1, sep_token_id=2)  # fmt: skip
    return config.max_position_embeddings


def _check_finetune_length(plan: Plan, positions: int | None) -> None:
    """Fine-tuning inputs fit the model this recipe pretrains."""
    ft = plan.configs.get("finetune")
    if (
        ft
        and positions
        and ft.max_seq_length
        and _made_here(plan, "finetune", "pretrain", ft.model_name_or_path)
        and ft.max_seq_length > positions
    ):
        raise UserError(
            f"max_seq_length {ft.max_seq_length} is longer than the pretrained model's "
            f"max_position_embeddings {positions}"
        )


def check_resume_up_front(plan: Plan, run: RunConfig, wanted: list[str]) -> None:
    """An interrupted pretraining run that `mlm run` would resume was trained with the same settings (the
    check pretraining makes when it resumes, made before the steps ahead of it run)."""
    from data_prep.steps import config_values
    from mlm.checkpoints import check_resume_config, find_resume

    cfg = plan.configs.get("pretrain")
    if cfg is None or "pretrain" not in wanted or run.force or cfg.force:
        return
    folder = Path(cfg.output_dir)
    if (folder / FINGERPRINT_FILE).is_file():  # a finished run: moved aside, never resumed
        return

    def check() -> None:
        checkpoint = find_resume(cfg.resume_from_checkpoint, folder)
        if checkpoint is not None:
            check_resume_config(checkpoint, {"config": config_values(cfg)}, folder)

    _in_section(plan, "pretrain", check)


# --- reuse: fingerprints of each step's config, inputs and upstream steps ---------------------------------

# the options of each step that name its inputs; those that earlier steps make are covered by the upstream
# steps' fingerprints, the others (the user's files and folders) are identified by content
INPUT_FIELDS = {
    "prepare": ("corpus",),
    "tokenizer": ("corpus", "data_dir"),
    "pack": ("data_dir", "tokenizer_dir"),
    "pretrain": ("data_dir", "tokenizer_dir", "model_name_or_path"),
    "finetune": ("model_name_or_path", "tokenizer_name", "train_file", "validation_file", "test_file"),
}


def step_fingerprints(plan: Plan, wanted: list[str]) -> dict[str, str]:
    """Each step's fingerprint: its config, its inputs by content, and the fingerprints of the steps before
    it. A step that will not run counts as what it last made (its record), when it has one. The inputs of
    the steps that will run must exist: a missing one is a UserError before any step runs."""
    fingerprints: dict[str, str] = {}
    for step in STEPS:
        if step not in plan.configs:
            continue
        cfg = plan.configs[step]
        done = cache.read(_step_folder(step, cfg, plan) / FINGERPRINT_FILE) if step not in wanted else None
        if done and done.get(cache.FINGERPRINT_KEY):
            fingerprints[step] = done[cache.FINGERPRINT_KEY]
            continue
        try:
            inputs = _inputs(plan, step, cfg)
        except UserError as e:
            if step in wanted:
                raise UserError(f"{plan.path}: section '{step}': {e}") from None
            inputs = {"unavailable": str(e)}
        blob = {"step": step, "config": _non_defaults(cfg), "upstream": list(fingerprints.values())}
        fingerprints[step] = cache.fingerprint({**blob, "inputs": inputs} if inputs else blob)
    return fingerprints


def _inputs(plan: Plan, step: str, cfg: Any) -> dict[str, Any]:
    """The identities of `step`'s inputs that no earlier step of the recipe makes."""
    out: dict[str, Any] = {}
    for name in INPUT_FIELDS.get(step, ()):
        value = getattr(cfg, name, None)
        if not value or any(_made_here(plan, step, other, str(value)) for other in plan.configs):
            continue
        if name == "corpus":
            from data_prep.read import corpus_fingerprint, resolve_specs

            hub = {k: getattr(cfg, k) for k in ("hub_config", "hub_split") if hasattr(cfg, k)}
            out[name] = corpus_fingerprint(resolve_specs(value, **hub))
        else:
            out[name] = _identity(name, str(value))
    return out


def _identity(name: str, spec: str) -> Any:
    """A file or folder by content; a Hub or built-in name as itself. Missing: a UserError naming it."""
    from mlm.hub import looks_like_repo_id

    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return cache.file_digest(path)
    if path.is_dir():
        return cache.folder_digest(path)
    folder, at, split = spec.rpartition("@")
    if at and Path(os.path.expanduser(folder)).is_dir():  # a saved dataset's split: FOLDER@SPLIT
        return {"folder": cache.folder_digest(Path(os.path.expanduser(folder))), "split": split}
    if spec.startswith(("hf:", "builtin:")) or (
        name in ("model_name_or_path", "tokenizer_name") and looks_like_repo_id(spec)
    ):
        return spec
    what = "data file" if name.endswith("_file") else f"{name} folder"
    raise UserError(f"{name}: {what} not found: {spec}")


def _non_defaults(cfg: Any) -> dict[str, Any]:
    """The config values that differ from the defaults: a new option with a default changes no fingerprint."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        value = getattr(cfg, f.name)
        if value != default:
            out[f.name] = value
    return out


def _launch() -> tuple[int, int]:
    """(rank, world size) under torchrun / accelerate launch; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def run_recipe(run: RunConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run a recipe's steps in order; returns the report (also written to OUTPUT_DIR/report.json).

    Under a distributed launch (torchrun, accelerate launch) only `pretrain` runs, in every process; the
    steps before it must be done already (their outputs are reused) and the steps after it are left for a
    plain `mlm run` afterwards. Only the main process logs and writes."""
    run.validate()
    plan = plan_recipe(run)
    check_plan(plan)
    wanted = [s for s in STEPS if s in plan.configs and (not run.steps or s in run.steps)]
    fingerprints = step_fingerprints(plan, wanted)
    check_resume_up_front(plan, run, wanted)
    rank, world = _launch()
    if rank != 0:
        log = _quiet
    with output_folder(
        plan.output_dir, "run", recipe_inputs(run, plan), in_place=True,
        config=dataclasses.asdict(run), main=rank == 0,
    ):  # fmt: skip
        return _run_steps(run, plan, fingerprints, wanted, log, rank, world)


def recipe_inputs(run: RunConfig, plan: Plan) -> dict[str, list[str]]:
    """What a recipe reads from outside its folder: the recipe, the corpus and the labelled data."""
    prepare, finetune = plan.configs.get("prepare"), plan.configs.get("finetune")
    corpus = getattr(prepare, "corpus", None) or []
    labelled = [getattr(finetune, k, None) for k in ("train_file", "validation_file", "test_file")]
    return {
        "recipe": [run.recipe],
        "corpus": [corpus] if isinstance(corpus, str) else list(corpus),
        "data": [f for f in labelled if f],
    }


def _run_steps(
    run: RunConfig, plan: Plan, fingerprints: dict[str, str], wanted: list[str],
    log: Callable[[str], None], rank: int, world: int,
) -> dict[str, Any]:  # fmt: skip
    """Each wanted step in order, skipping those whose fingerprint (config and inputs) is unchanged."""
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    for step in STEPS:
        if step not in plan.configs:
            continue
        cfg = plan.configs[step]
        if step == "pretrain" and run.force:
            cfg = dataclasses.replace(cfg, force=True)  # start over: no resuming from the old checkpoints
        fp = fingerprints[step]
        folder = _step_folder(step, cfg, plan)
        if step not in wanted:
            if (done := cache.read(folder / FINGERPRINT_FILE)) is not None:
                results[step] = done.get("result")
            continue
        if not run.force and step != "report" and (done := cache.lookup(folder / FINGERPRINT_FILE, fp)):
            log(f"[{step}] unchanged, reusing {folder}")
            results[step] = done.get("result")
            continue
        if world > 1 and step != "pretrain":
            if STEPS.index(step) < STEPS.index("pretrain"):
                raise UserError(
                    f"[{step}] has to run before pretraining, and under a distributed launch `mlm run` runs "
                    f"only the pretrain step: run the data steps in one process first "
                    f"(`mlm run {run.recipe} --steps prepare tokenizer pack`), then launch again"
                )
            log(
                f"[{step}] skipped under a distributed launch: run `mlm run {run.recipe}` in one process next"
            )
            continue
        if step == "pretrain" and (folder / FINGERPRINT_FILE).is_file():
            if world > 1:
                raise UserError(
                    f"[{step}] {folder} holds a finished run with another config; remove it or run the "
                    "recipe in one process to replace it"
                )
            # a finished run with another config: start afresh rather than resume its checkpoints, and keep
            # the old run (a trained model is never deleted by a config change)
            old = folder.with_name(f"{folder.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
            log(f"[{step}] config or inputs changed: moving the finished run to {old}")
            folder.rename(old)
        log(f"[{step}] running -> {folder}")
        t = time.perf_counter()
        results[step] = _RUNNERS[step](cfg, plan, results)
        timings[step] = round(time.perf_counter() - t, 1)
        if step != "report" and rank == 0:
            cache.store(folder / FINGERPRINT_FILE, fp, result=results[step])
        log(f"[{step}] done in {timings[step]:.1f} s")
    return results.get("report") or results


def _quiet(message: str) -> None:
    pass


def _step_folder(step: str, cfg: Any, plan: Plan) -> Path:
    if step == "report":
        return plan.output_dir
    return Path(cfg.output_dir)


def _run_prepare(cfg, plan, results):
    from data_prep.prepare import prepare

    return prepare(cfg)


def _run_tokenizer(cfg, plan, results):
    from data_prep.tokenizer import train_tokenizer

    tok = train_tokenizer(cfg)
    return {"vocab_size": len(tok), "output_dir": cfg.output_dir}


def _run_pack(cfg, plan, results):
    from data_prep.packing import pack

    return pack(cfg)


def _run_pretrain(cfg, plan, results):
    from mlm.pretrain import pretrain

    return pretrain(cfg)


def _run_finetune(cfg, plan, results):
    """The pretrained model against the same model from scratch and TF-IDF, by `mlm evaluate`'s engine on
    a one-task suite written from the finetune section (SUITE_FILE); with push_to_hub, the classifier of the
    first seed at the largest label fraction is pushed."""
    from mlm.evaluate import EvaluateConfig, evaluate

    report = plan.configs.get("report", ReportConfig())
    suite = write_suite(cfg, report, plan.name, plan.output_dir / SUITE_FILE)
    ecfg = EvaluateConfig(
        model=cfg.model_name_or_path, suite=str(suite), output_dir=cfg.output_dir,
        no_scratch=not report.compare_from_scratch, no_tfidf=not report.tfidf_baseline,
        save_models=cfg.save_model, use_cpu=cfg.use_cpu, disable_tqdm=cfg.disable_tqdm,
    )  # fmt: skip
    out = evaluate(ecfg)
    if cfg.push_to_hub:
        _push_classifier(cfg, out)
    return out


SUITE_FILE = "finetune_suite.yaml"
# finetune-section options that each run of the engine sets, and the recipe option that says it instead
SET_BY_REPORT = {"label_fraction": "label_fractions", "seed": "seeds", "from_scratch": "compare_from_scratch"}
# options that describe the task (a suite task's keys) rather than how to fine-tune
TASK_KEYS = ("text_column", "text_pair_column", "label_column", "column_names", "delimiter", "encoding",
             "encoding_errors", "on_bad_lines", "problem_type", "metrics", "max_train_samples")  # fmt: skip
NOT_IN_SUITE = ("model_name_or_path", "output_dir", "train_file", "validation_file", "test_file", "save_model",
                "use_cpu", "disable_tqdm", "push_to_hub", "hub_model_id", "hub_strategy", "hub_private_repo",
                "hub_token", "hub_revision", "hub_always_push")  # fmt: skip


def check_finetune_section(cfg: Any) -> None:
    """The finetune section sets nothing that the report section says for every run."""
    given = _non_defaults(cfg)
    for name, instead in SET_BY_REPORT.items():
        if name in given:
            raise UserError(f"{name} is set for each run by the recipe: use `report: {instead}`")
    if not (cfg.validation_file or cfg.test_file):
        raise UserError("the recipe's fine-tuning compares models on held-out data: give validation_file "
                        "and/or test_file (or fine-tune alone with `mlm finetune`)")  # fmt: skip


def write_suite(cfg: Any, report: ReportConfig, name: str, path: Path) -> Path:
    """The one-task suite of a recipe's finetune section: its data and columns as the task, its other
    non-default options as the suite's fine-tuning settings."""
    import yaml

    given = _non_defaults(cfg)
    task = {"train": cfg.train_file, **({"dev": cfg.validation_file} if cfg.validation_file else {}),
            **({"test": cfg.test_file} if cfg.test_file else {})}  # fmt: skip
    task.update({k: v for k, v in given.items() if k in TASK_KEYS})
    settings = {k: v for k, v in given.items() if k not in (*TASK_KEYS, *NOT_IN_SUITE, *SET_BY_REPORT)}
    suite = {"name": name, "seeds": report.seeds, "label_fractions": list(report.label_fractions),
             "finetune": settings, "tasks": {name: task}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def _push_classifier(cfg: Any, results: dict[str, Any]) -> None:
    """Push the pretrained model's classifier at the largest label fraction (its first seed)."""
    from mlm.hub import PushConfig, push

    top = max(results["label_fractions"])
    row = next(r for r in results["rows"] if r["method"] == "pretrained" and r["label_fraction"] == top)
    push(PushConfig(folder=row["folders"][0], repo_id=cfg.hub_model_id, private=cfg.hub_private_repo,
                    commit_message="End of training"))  # fmt: skip


def _run_report(cfg, plan, results):
    from mlm.report import write_report

    return write_report(plan, results)


_RUNNERS = {
    "prepare": _run_prepare,
    "tokenizer": _run_tokenizer,
    "pack": _run_pack,
    "pretrain": _run_pretrain,
    "finetune": _run_finetune,
    "report": _run_report,
}
