import pytest

from miunlearn import DATASETS, METHODS, MODELS, MiunlearnError, load_config
from miunlearn.config import RunConfig, parse_overrides


@pytest.mark.parametrize("registry,kind", [(DATASETS, "dataset"), (MODELS, "model"), (METHODS, "unlearning method")])
def test_unknown_name_lists_valid_ones(registry, kind):
    with pytest.raises(MiunlearnError) as err:
        registry.get("nope")
    message = str(err.value)
    assert f"unknown {kind} 'nope'" in message
    assert all(name in message for name in registry.names())


def test_close_name_is_suggested():
    with pytest.raises(MiunlearnError, match="did you mean 'resnet18'"):
        MODELS.get("resnet-18")


def test_overrides_are_typed_and_nested():
    config = load_config(None, ["train.lr=0.1", "train.epochs=3", "unlearn.methods=[remi,retrain]",
                                "forget.classes=[1, 2]", "forget.mode=class", "data.subset=null"])
    assert config.train.lr == 0.1 and config.train.epochs == 3
    assert config.unlearn.methods == ["remi", "retrain"]
    assert config.forget.classes == [1, 2]
    assert config.data.subset is None


def test_unknown_key_suggests_closest():
    with pytest.raises(MiunlearnError, match=r"unknown config key 'train.lrr'.*did you mean train.lr\?"):
        load_config(None, ["train.lrr=0.1"])
    with pytest.raises(MiunlearnError, match="unknown config key 'trian'"):
        load_config(None, ["trian.lr=0.1"])


def test_wrong_type_is_rejected():
    with pytest.raises(MiunlearnError, match="train.epochs must be an integer"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(MiunlearnError, match="must be true or false"):
        load_config(None, ["train.augment=7"])


def test_malformed_override():
    with pytest.raises(MiunlearnError, match="not of the form"):
        parse_overrides(["train.lr"])


def test_master_seed_reaches_sections_unless_set(tmp_path):
    config = load_config(None, ["seed=7", "train.seed=3"])
    assert (config.data.seed, config.forget.seed, config.train.seed) == (7, 7, 3)
    path = tmp_path / "c.yaml"
    path.write_text("seed: 5\ntrain:\n  epochs: 2\n")
    config = load_config(path, ["train.epochs=4"])
    assert config.train.epochs == 4 and config.train.seed == 5


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(MiunlearnError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(MiunlearnError, match="not valid YAML"):
        load_config(bad)


def test_defaults_are_a_valid_config():
    assert isinstance(load_config(), RunConfig)


def test_registered_classes_carry_the_name_they_are_registered_under():
    """Names come from one source: the registry sets each class's ``name`` from its decorator."""
    from miunlearn import APPROXIMATORS, AUDIT_ATTACKS, METHODS
    from miunlearn.audit import REFERENCE_ATTACKS
    from miunlearn.registry import Registry

    for registry in (APPROXIMATORS, AUDIT_ATTACKS, METHODS, REFERENCE_ATTACKS):
        for name in registry.names():
            assert registry.get(name).name == name
    clash = Registry("thing")
    with pytest.raises(RuntimeError, match="names itself 'b'"):
        clash.register("a")(type("Thing", (), {"name": "b"}))


def test_every_approximator_has_its_own_config_drawn_from_the_approximator_section():
    """Per-component configs: each approximator's Config names the ``approximator`` fields it reads (the rest,
    when changed from their defaults, are refused as ignored)."""
    import dataclasses

    from miunlearn import APPROXIMATORS
    from miunlearn.config import ApproximatorConfig
    from miunlearn.guidance.approximators import approximator_problems

    section = {f.name for f in dataclasses.fields(ApproximatorConfig)}
    for name in APPROXIMATORS.names():
        own = APPROXIMATORS.get(name).Config
        assert {f.name for f in dataclasses.fields(own)} <= section, name
        assert approximator_problems(ApproximatorConfig(name=name)) == [], name
    assert approximator_problems(ApproximatorConfig(name="loss-threshold", top_k=5)) == [
        "approximator.top_k=5 is ignored by approximator 'loss-threshold'; remove it"]
    assert approximator_problems(ApproximatorConfig(name="shadow-nn", attack_epochs=0)) == [
        "approximator.attack_epochs must be at least 1, got 0"]
    assert approximator_problems(ApproximatorConfig(attack_epochs=50)) == [  # the default is folds
        "approximator.attack_epochs=50 is ignored by approximator 'folds'; remove it"]
