"""Config is decoupled from the machine and from loaded models."""
import pytest

from lsdebm.config import Config, ModelConfig, check_model_memory, get_preset, parse_sets
from lsdebm.errors import InputError


@pytest.fixture
def tiny_limit(monkeypatch):
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.0001")  # ~100 KiB: a "small machine"


def test_checkpoint_config_is_valid_regardless_of_host_memory(tiny_limit):
    paper = get_preset("paper")
    assert Config.from_json(paper.to_json()) == paper  # 128^3 x 16 channels: far above the limit
    assert ModelConfig(grid=100000, channels=(4, 8)).grid == 100000
    with pytest.raises(InputError, match="model grid 128\\^3 with 16 channels"):
        check_model_memory(paper.model)
    from lsdebm.nn import build_model

    with pytest.raises(InputError, match="limit"):
        build_model("vae", paper)


def test_header_of_a_large_checkpoint_reads_on_a_small_machine(tmp_path, tiny_cfg, monkeypatch):
    from lsdebm.nn import build_model
    from lsdebm.runtime.checkpoint import read_metadata, save_checkpoint

    path = save_checkpoint(build_model("vae", tiny_cfg), tmp_path / "v.safetensors")
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.0000001")
    assert read_metadata(path)["config"] == tiny_cfg


def test_with_sampling_settings_leaves_the_loaded_config_alone(tiny_ckpts, tmp_path, monkeypatch):
    from lsdebm.runtime import checkpoint

    seen = []
    real_load = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: seen.append(real_load(*a, **k)) or seen[-1])
    dst = checkpoint.with_sampling_settings(tiny_ckpts["lebm"], tmp_path / "l.safetensors",
                                            {"lebm.posterior_steps": 7}, "test")
    loaded = seen[0]
    assert loaded.model.cfg is loaded.config and loaded.config.lebm.posterior_steps != 7
    assert real_load(dst).config.lebm.posterior_steps == 7


def test_config_package_keeps_its_public_names():
    import lsdebm.config as config
    from lsdebm.config import overrides, presets, schema

    assert config.Config is schema.Config and config.get_preset is presets.get_preset
    assert parse_sets(["langevin.K=5", "model.channels=[4,8]"]) == {"langevin.K": 5, "model.channels": (4, 8)}
    assert overrides.replace_fields(get_preset("tiny"), {"langevin.K": 3}).langevin.K == 3
    with pytest.raises(InputError, match="SECTION.FIELD=VALUE"):
        parse_sets(["K=3"])
