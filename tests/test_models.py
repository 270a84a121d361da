import pytest
import torch

from miunlearn import MiunlearnError, build_model, load_weights, save_weights
from miunlearn.data import DatasetInfo
from miunlearn.models import MODELS

GREY = DatasetInfo("g", (1, 28, 28), 10, is_image=True)
RGB = DatasetInfo("c", (3, 32, 32), 7, is_image=True)
TABLE = DatasetInfo("t", (446,), 30, is_image=False)


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("info", [GREY, RGB], ids=["grey28", "rgb32"])
def test_every_model_maps_images_to_class_logits(name, info):
    model = build_model(name, info).eval()
    assert model(torch.randn(2, *info.input_shape)).shape == (2, info.num_classes)


def test_mlp_takes_tabular_data_and_image_models_refuse_it():
    assert build_model("mlp", TABLE)(torch.randn(3, 446)).shape == (3, 30)
    with pytest.raises(MiunlearnError, match="needs image data"):
        build_model("cnn", TABLE)


def test_weights_round_trip(tmp_path):
    model = build_model("cnn", GREY)
    save_weights(model, tmp_path / "w.safetensors")
    other = load_weights(build_model("cnn", GREY), tmp_path / "w.safetensors")
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,info", [("mlp", GREY), ("cnn", RGB), ("cnn", DatasetInfo("g", (1, 28, 28), 5, True))])
def test_weights_of_another_architecture_are_refused(tmp_path, name, info):
    save_weights(build_model("cnn", GREY), tmp_path / "w.safetensors")
    with pytest.raises(MiunlearnError, match="holds weights for model 'cnn' with 10 classes"):
        load_weights(build_model(name, info), tmp_path / "w.safetensors")


def test_not_a_weights_file(tmp_path):
    (tmp_path / "w.safetensors").write_text("hello")
    with pytest.raises(MiunlearnError, match="not a readable"):
        load_weights(build_model("cnn", GREY), tmp_path / "w.safetensors")
