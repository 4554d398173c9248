import pytest

from afg_datasets.config import BuildConfig, load_config, resolve_config_path
from afg_datasets.errors import ConfigError


def test_default_builder_loads_and_matches_dataclass_defaults_for_known_fields():
    cfg = load_config("digits")
    assert cfg.source.name == "digits"
    assert list(cfg.attacks) == ["fgsm", "pgd", "cw_l2"]
    assert cfg.model.layers == ("block1", "block2", "block3")


def test_config_hash_is_stable_and_sensitive():
    cfg = load_config("digits")
    assert cfg.config_hash() == load_config("digits").config_hash()
    assert cfg.replace(seed=1).config_hash() != cfg.config_hash()
    assert cfg.replace(limit=10).config_hash() != cfg.config_hash()
    reordered = dict(reversed(list(cfg.attacks.items())))
    assert cfg.replace(attacks=reordered).config_hash() != cfg.config_hash()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"bogus": 1}, "bogus"),
        ({"genome": {"groups": 0}}, "genome.groups"),
        ({"genome": {"colour": 1}}, "genome.colour"),
        ({"splits": {"train": 0.5, "validation": 0.1, "test": 0.1}}, "sum to 1"),
        ({"attacks": {"fgsm": {"eps": -0.1}}}, "eps"),
        ({"attacks": {"fgsm": {"epsilon": 0.1}}}, "epsilon"),
        ({"attacks": {"carlini": {}}}, "carlini"),
        ({"source": {"name": "imagenet21k"}}, "imagenet21k"),
        ({"model": {"architecture": "vit"}}, "vit"),
        ({"genome": {"encoder": "magic"}}, "magic"),
        (
            {"genome": {"encoder": "groupmap", "steps": 4}},
            "genome.steps: not a setting of the 'groupmap'",
        ),
        ({"genome": {"encoder": "activations", "groups": 4}}, "its settings: encoder, size"),
        ({"genome": {"encoder": "groupviz", "lr": -1.0}}, "genome.lr"),
        ({"genome": {"encoder": "groupbasis", "fit_images": 0}}, "genome.fit_images"),
        ({"genome": ["groupmap"]}, "genome must be a mapping"),
        (
            {"source": {"name": "digits", "split": "test"}},
            "source.split: not a setting of the 'digits'",
        ),
        ({"source": {"name": "imagefolder", "label_field": "y"}}, "source.label_field"),
        ({"source": {"name": "wds", "resize": 4}}, "source.resize .4. must be at least"),
        ({"attacks": {}}, "at least one"),
        ({"limit": 0}, "limit"),
    ],
)
def test_invalid_values_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        BuildConfig.from_dict(data)


def test_unknown_name_lists_valid_choices():
    with pytest.raises(ConfigError) as err:
        BuildConfig.from_dict({"attacks": {"carlini": {}}})
    text = str(err.value)  # one line, both backends' names
    assert "advertorch: fgsm, bim, pgd" in text and "torchattacks: apgd_ce" in text
    assert "deepfool" in text and "\n" not in text


def test_builder_names_and_paths(tmp_path):
    assert resolve_config_path(None).name == "digits.yaml"
    with pytest.raises(ConfigError, match="digits"):
        resolve_config_path("no-such-builder")
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\nattacks: [fgsm]\n")
    cfg = load_config(str(path))
    assert cfg.seed == 3 and cfg.attacks == {"fgsm": {}}
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config_path(str(tmp_path / "missing.yaml"))


def test_a_folder_named_like_a_builder_is_never_taken_for_it(tmp_path, monkeypatch):
    """A corpus built with `--out digits` (or `--out mnist`) does not hide the builder of
    that name; a folder that is no builder is named as a folder."""
    monkeypatch.chdir(tmp_path)
    for name in ("digits", "mnist", "elsewhere"):
        (tmp_path / name).mkdir()
    assert resolve_config_path(None).name == "digits.yaml"
    assert resolve_config_path("mnist").name == "mnist.yaml"
    with pytest.raises(ConfigError, match="'elsewhere' is a folder, not a builder YAML"):
        resolve_config_path("elsewhere")


def test_the_genome_section_is_the_chosen_encoders_own_config():
    from afg_datasets.genome import ENCODERS

    assert load_config("digits").to_dict()["genome"] == {"encoder": "activations", "size": 8}
    cfg = load_config("digits", encoder="groupmap")
    assert isinstance(cfg.genome, ENCODERS["groupmap"].Config)
    assert cfg.to_dict()["genome"] == {
        "encoder": "groupmap",
        "groups": 4,
        "size": 8,
        "nmf_iters": 100,
    }
    # switching keeps the settings both encoders have; the others take their defaults
    switched = cfg.replace(genome__encoder="activations", genome__size=4)
    assert switched.to_dict()["genome"] == {"encoder": "activations", "size": 4}
    basis = cfg.replace(genome__encoder="groupbasis")
    assert (basis.genome.groups, basis.genome.fit_images) == (4, 512)
    assert len({cfg.config_hash(), switched.config_hash(), basis.config_hash()}) == 3
    # a manifest's section reads back to the same config
    assert BuildConfig.from_dict(basis.to_dict()).config_hash() == basis.config_hash()


def test_a_builder_gives_settings_for_the_encoder_that_the_cli_picks(tmp_path):
    viz = load_config("digits", encoder="groupviz")  # builders/digits.yaml: encoder_settings
    assert (viz.genome.encoder, viz.genome.steps, viz.genome.image_size) == ("groupviz", 48, 32)
    assert viz.genome.lr == 0.6  # chosen by `afg bench-encoder --curve` (docs/benchmarks.md)
    assert viz.genome.size == 8  # carried over from the builder's own genome
    assert load_config("digits", encoder="activations") == load_config("digits")
    path = tmp_path / "c.yaml"
    path.write_text("encoder_settings:\n  groupviz: {steps: 9}\n")
    assert load_config(str(path), encoder="groupviz").genome.steps == 9
    assert load_config(str(path)).genome.encoder == "groupmap"  # presets are not the config
    for bad, message in [
        ("encoder_settings: {magic: {}}", "unknown encoder 'magic'"),
        ("encoder_settings: {groupviz: {steps: 0}}", "genome.steps"),
        ("encoder_settings: {groupviz: {colour: 1}}", "genome.colour: not a setting"),
        ("encoder_settings: {groupviz: 3}", "encoder_settings.groupviz must be a mapping"),
        ("encoder_settings: [groupviz]", "encoder_settings must map"),
    ]:
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(str(path))  # checked whichever encoder is built


def test_the_source_section_is_the_chosen_sources_own_config():
    from afg_datasets.sources import SOURCES

    cfg = load_config("digits")
    assert isinstance(cfg.source, SOURCES["digits"].Config)
    assert set(cfg.to_dict()["source"]) == {"name", "root", "image_size"}  # workers: not hashed
    hf = cfg.replace(source__name="hf", source__root="dir", source__split="test")
    assert (hf.source.split, hf.source.image_size, hf.source.image_column) == ("test", 32, "image")
    assert hf.config_hash() != cfg.replace(source__name="hf", source__root="dir").config_hash()


def test_an_older_manifests_flat_sections_read_as_the_config_they_built():
    # before format 1.2 the sections listed every source's / encoder's settings; the ones the
    # chosen entry lacks never affected the corpus
    flat_source = {
        "name": "digits", "root": None, "image_size": 32, "resize": None, "on_bad_image": "error",
        "split": "test", "image_column": "image", "label_column": "label",
        "label_field": "label", "class_names": [],
    }  # fmt: skip
    flat_genome = {"encoder": "groupmap", "groups": 4, "size": 8, "nmf_iters": 100, "steps": 64}
    cfg = BuildConfig.from_manifest({"source": flat_source, "genome": flat_genome})
    assert cfg == BuildConfig()
    with pytest.raises(ConfigError, match="source.colour"):  # a key no entry has: refused
        BuildConfig.from_manifest({"source": {**flat_source, "colour": 1}})
    with pytest.raises(ConfigError, match="source.split"):
        BuildConfig.from_dict({"source": flat_source})  # a config file is strict


def test_cli_choices_equal_the_registries():
    from typing import get_args

    from afg_datasets import cli_options
    from afg_datasets.evaluation.protocol import UNSEEN
    from afg_datasets.models.target import PRECISIONS
    from afg_datasets.recognizer import OBJECTIVES

    assert set(get_args(cli_options.PrecisionChoice)) == set(PRECISIONS)
    assert set(get_args(cli_options.UnseenChoice)) == set(UNSEEN)
    assert set(get_args(cli_options.ObjectiveChoice)) == set(OBJECTIVES)


def test_a_fixed_choice_option_names_its_choices(tmp_path):
    from typer.testing import CliRunner

    from afg_datasets.cli import app

    result = CliRunner().invoke(app, ["build-shards", "--precision", "fp8", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "fp8" in result.output and "fp32" in result.output and "bf16" in result.output
    assert not list(tmp_path.iterdir()), "nothing written"
