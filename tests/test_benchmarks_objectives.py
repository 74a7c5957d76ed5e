"""benchmarks/objectives.py: a config name means the same pretraining whatever the domain's recipe sets."""

import importlib.util
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_study():
    """The script as a module (its sibling `common` on the path, as when it runs)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("objectives_study", ROOT / "benchmarks" / "objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pretrain_section(study, domain: str, name: str, out: Path) -> dict:
    return yaml.safe_load(study.study_recipe(domain, name, 1.0, out).read_text())["pretrain"]


def test_config_masks_single_tokens_unless_a_setting_says(tmp_path):
    study = load_study()
    recipe = yaml.safe_load((ROOT / study.DOMAINS["imdb"]["recipe"]).read_text())
    assert recipe["pretrain"]["mask_span_mean"] == 3  # the recipe masks spans ...
    plain = pretrain_section(study, "imdb", "mlm-modernbert-tiny+lr3e-3+bs32+meanpool", tmp_path)
    assert plain["mask_span_mean"] == 1.0 and plain["mlm_probability"] == 0.15  # ... the config does not
    assert plain["mlm_probability_final"] is None
    spans = pretrain_section(study, "imdb", "mlm-modernbert-tiny+lr3e-3+bs32+meanpool+spans3", tmp_path)
    assert spans["mask_span_mean"] == 3.0
    falling = pretrain_section(study, "pydocs", "mlm-modernbert-tiny+rate30to15", tmp_path)
    assert (falling["mlm_probability"], falling["mlm_probability_final"]) == (0.3, 0.15)


def test_study_recipe_is_a_valid_recipe(tmp_path):
    from mlm.recipe import RunConfig, plan_recipe

    study = load_study()
    path = study.study_recipe("imdb", "mlm-modernbert-tiny+lr3e-3+bs32+meanpool", 1.0, tmp_path)
    plan = plan_recipe(RunConfig(recipe=str(path)))
    assert plan.configs["pretrain"].mask_span_mean == 1.0
