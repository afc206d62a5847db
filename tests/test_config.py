from pathlib import Path

import pytest

from configs import CONFIG_DIR
from tiling.errors import InputError
from wsi_pipeline.config import PipelineConfig, load_config


@pytest.mark.parametrize("name", ["default", "cpu-fast", "gpu"])
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert isinstance(cfg, PipelineConfig)
    assert load_config(CONFIG_DIR / f"{name}.yaml") == cfg


def test_shipped_configs_differ_where_they_should():
    assert load_config("default").device == "auto"
    assert load_config("cpu-fast").device == "cpu"
    assert load_config("gpu").device == "cuda"
    assert len({load_config(n).hash() for n in ["default", "cpu-fast", "gpu"]}) == 3


def test_unknown_key_is_named(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("nuclei:\n  batch_sise: 4\n")
    with pytest.raises(InputError, match=r"unknown key 'nuclei\.batch_sise'"):
        load_config(p)


def test_mistyped_value_is_named(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("tissue:\n  mpp: fast\n")
    with pytest.raises(InputError, match=r"'tissue\.mpp'"):
        load_config(p)


def test_invalid_yaml_and_missing_file(tmp_path: Path):
    p = tmp_path / "broken.yaml"
    p.write_text("nuclei: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_hash_ignores_cluster_layout_but_not_results_settings():
    base = load_config("default")
    assert base.updated(**{"cluster.workers": 4}).hash() == base.hash()
    assert base.updated(**{"tissue.mpp": 12.0}).hash() != base.hash()
    with pytest.raises(InputError, match="unknown key"):
        base.updated(**{"tissue.nonsense": 1})
