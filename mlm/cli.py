"""The `mlm` command: a thin layer over the Python API. The only module that knows about argv."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from data_prep.outputs import describe_os_error
from mlm.config import add_arguments, config_from_args, load_yaml


@dataclass
class FillMaskConfig:
    """Options of `mlm fill-mask`."""

    model: str = field(default="", metadata={"help": "model folder or Hub id"})
    text: str = field(default="", metadata={"help": "text with the tokenizer's mask token, e.g. [MASK]"})
    top_k: int = field(default=5, metadata={"help": "predictions to show"})

    def validate(self) -> None:
        if not self.model or not self.text:
            raise UserError("fill-mask needs MODEL and TEXT")
        if self.top_k < 1:
            raise UserError(f"fill-mask: top_k must be >= 1, got {self.top_k}")


# command -> (module:Config, module:function, positional fields, recipe section for --config, help)
COMMANDS: dict[str, tuple[str, str, tuple[str, ...], str | None, str]] = {
    "prepare": ("data_prep.prepare:PrepareConfig", "data_prep.prepare:prepare", (), "prepare",
                "load, clean and split a corpus"),
    "train-tokenizer": ("data_prep.tokenizer:TokenizerConfig", "data_prep.tokenizer:train_tokenizer", (),
                        "tokenizer", "train a WordPiece, BPE or Unigram tokenizer"),
    "pack": ("data_prep.packing:PackConfig", "data_prep.packing:pack", (), "pack",
             "tokenize and pack into fixed-length blocks"),
    "pretrain": ("mlm.pretrain:PretrainConfig", "mlm.pretrain:pretrain", (), "pretrain",
                 "masked-language-model pretraining"),
    "finetune": ("mlm.finetune:FinetuneConfig", "mlm.finetune:finetune", (), "finetune",
                 "fine-tune a checkpoint for text classification"),
    "evaluate": ("mlm.evaluate:EvaluateConfig", "mlm.evaluate:evaluate", ("model",), None,
                 "fine-tune a checkpoint on a task suite vs from scratch and TF-IDF; plots"),
    "push": ("mlm.hub:PushConfig", "mlm.hub:push", ("folder", "repo_id"), None,
             "push a model folder to the Hugging Face Hub"),
    "fill-mask": ("mlm.cli:FillMaskConfig", "mlm.cli:fill_mask", ("model", "text"), None,
                  "print the top predictions for a masked text"),
    "run": ("mlm.recipe:RunConfig", "mlm.cli:run_recipe_cli", ("recipe",), None,
            "run the steps of a YAML recipe"),
}  # fmt: skip


# an example of each command, shown under its --help
EXAMPLES: dict[str, str] = {
    "prepare": "mlm prepare --corpus data/*.jsonl.gz --text_field body --output_dir runs/x/data",
    "train-tokenizer": "mlm train-tokenizer --data_dir runs/x/data --output_dir runs/x/tok --kind wordpiece "
    "--vocab_size 16384",
    "pack": "mlm pack --data_dir runs/x/data --tokenizer_dir runs/x/tok --output_dir runs/x/packed "
    "--max_seq_length 128",
    "pretrain": "mlm pretrain --data_dir runs/x/packed --output_dir runs/x/pretrain --preset mini "
    "--max_time_minutes 60 --report_to tensorboard",
    "finetune": "mlm finetune --model_name_or_path runs/x/pretrain/final --train_file train.csv --validation_file dev.csv "
    "--test_file test.csv --output_dir runs/x/cls --class_names negative positive",
    "evaluate": "mlm evaluate runs/x/pretrain --suite suites/glue_small.yaml",
    "push": "mlm push runs/x/pretrain/final your-name/my-bert --private",
    "fill-mask": 'mlm fill-mask runs/x/pretrain/final "the [MASK] of the function"',
    "run": "mlm run recipes/demo.yaml --steps prepare tokenizer pack",
}


def version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    import importlib.metadata

    from mlm import __version__

    try:
        return importlib.metadata.version("mlm")
    except importlib.metadata.PackageNotFoundError:
        return __version__


def _load(ref: str) -> Any:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def fill_mask(cfg: FillMaskConfig) -> list[dict]:
    """Top-k predictions for the mask token in `cfg.text`, printed as a table."""
    from transformers import pipeline

    from mlm.model_folder import check_model_folder

    check_model_folder(cfg.model)
    try:
        pipe = pipeline("fill-mask", model=cfg.model, tokenizer=cfg.model, top_k=cfg.top_k)
    except (OSError, ValueError) as e:
        if Path(cfg.model).exists():
            raise UserError(
                f"model {cfg.model} could not be loaded: {str(e).strip().splitlines()[0]}"
            ) from None
        raise UserError(
            f"model not found: {cfg.model} (not a local folder, and not reachable on the Hub)"
        ) from None
    mask = pipe.tokenizer.mask_token
    if mask not in cfg.text:
        raise UserError(f"the text has no {mask} token: {cfg.text!r}")
    preds = pipe(cfg.text)
    if preds and isinstance(preds[0], list):  # several masks: show the first
        preds = preds[0]
    for p in preds:
        print(f"{p['score']:.4f}  {p['token_str']:<20} {p['sequence']}")
    return preds


def run_recipe_cli(cfg) -> dict:
    from mlm.recipe import run_recipe

    return run_recipe(cfg)


def _add_output_flags(parser: argparse.ArgumentParser, taken: set[str], default: Any = False) -> None:
    """--quiet and --verbose (not where the command has its own option of that name)."""
    group = parser.add_argument_group("output")
    if "quiet" not in taken:
        group.add_argument("--quiet", "-q", action="store_true", default=default, help="no progress bars")
    if "verbose" not in taken:
        group.add_argument("--verbose", "-v", action="store_true", default=default,
                           help="the libraries' own output too (load reports, loss dicts, their progress bars)")  # fmt: skip


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlm",
        description="Pretrain a small BERT on your corpus, then fine-tune it as a classifier.",
        epilog="example:\n  mlm run recipes/demo.yaml\n  mlm pretrain --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"mlm {version()}")
    _add_output_flags(parser, set())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (cfg_ref, _, positional, section, help_text) in COMMANDS.items():
        usage = " ".join(["mlm", name, *(p.upper() for p in positional), "[options]"])
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example:\n  {EXAMPLES[name]}",
                           usage=usage, formatter_class=argparse.RawDescriptionHelpFormatter,
                           allow_abbrev=False)  # fmt: skip
        if name == command:  # only the chosen command's options are built (imports stay lazy)
            cls = _load(cfg_ref)
            add_arguments(p, cls, positional)
            if section:
                p.add_argument(
                    "--config", dest="_config", metavar="RECIPE.yaml",
                    help=f"read defaults from the '{section}:' section of a recipe",
                )  # fmt: skip
            _add_output_flags(p, {f.name for f in dataclasses.fields(cls)}, default=argparse.SUPPRESS)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that every `finally` runs (locks, temporary folders)."""


@contextlib.contextmanager
def _sigterm_raises():
    """While the command runs, SIGTERM raises `Terminated` in this process (not in its forked workers, which
    keep the default: they end at once)."""
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        return _error(_unknown_options(parser, args.command, unknown))
    if not args.command:
        parser.print_help()
        return 2
    cfg_ref, fn_ref, _, section, _ = COMMANDS[args.command]
    cfg = None
    try:
        with _sigterm_raises():
            cls = _load(cfg_ref)
            base = {}
            if getattr(args, "_config", None):
                base = dict(load_yaml(args._config).get(section) or {})
            if args.quiet and "disable_tqdm" in {f.name for f in dataclasses.fields(cls)}:
                base.setdefault("disable_tqdm", True)
            cfg = config_from_args(cls, args, base, where=f"mlm {args.command}")
            fn: Callable = _load(fn_ref)
            _run(fn, cfg, quiet=args.quiet, verbose=bool(getattr(cfg, "verbose", args.verbose)))
    except UserError as e:
        return _error(str(e))
    except OSError as e:  # a read-only or full disk, a permission: one line, not a traceback
        return _error(describe_os_error(e, getattr(cfg, "output_dir", None)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


def _run(fn: Callable, cfg: Any, quiet: bool, verbose: bool) -> None:
    """`fn(cfg)` with the progress bars and library output the flags ask for."""
    import huggingface_hub.utils

    from data_prep.progress import settings
    from mlm.progress import library_output

    hub_bars = not huggingface_hub.utils.are_progress_bars_disabled()
    if quiet:
        huggingface_hub.utils.disable_progress_bars()
    try:
        with settings(quiet=quiet, verbose=verbose), library_output(verbose=verbose):
            fn(cfg)
    finally:
        if quiet and hub_bars:
            huggingface_hub.utils.enable_progress_bars()


def _unknown_options(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """One line naming the options `command` does not have, each with the closest ones it has."""
    from mlm.config import closest

    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    target = sub.choices[command] if sub and command in sub.choices else parser
    valid = [o for a in target._actions for o in a.option_strings if o.startswith("--") and "-" not in o[2:]]
    flags = [u.split("=")[0] for u in unknown if u.startswith("-")] or unknown
    where = f"mlm {command}" if command else "mlm"
    hints = "; ".join(f"{flag}{closest(flag, valid)}" for flag in flags)
    return f"{where}: unknown option(s) {hints}; `{where} --help` lists every option"


def _error(message: str) -> int:
    print("error: " + " ".join(message.splitlines()), file=sys.stderr)
    return 2


def entry() -> None:  # console-script entry point
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    sys.exit(main())


if __name__ == "__main__":
    entry()
