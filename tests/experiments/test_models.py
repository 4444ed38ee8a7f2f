"""Tests of responsibility.experiments.models: shapes, parameter counts and names."""

from __future__ import annotations

import pytest
import torch

from responsibility.experiments.models import MLP, LeNet5, PaperCNN


def test_paper_cnn_matches_the_paper_on_fashion_mnist() -> None:
    net = PaperCNN()
    params = dict(net.named_parameters())
    assert list(params) == ["conv.weight", "conv.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert params["conv.weight"].shape == (8, 1, 3, 3)
    assert params["fc1.weight"].numel() == 692_224
    assert params["fc2.weight"].shape == (10, 128)
    assert net(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_paper_cnn_other_geometries() -> None:
    net = PaperCNN(in_channels=3, image_size=8, num_classes=2, conv_channels=4, hidden=16)
    assert net.fc1.in_features == 4 * 6 * 6
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 2)
    with pytest.raises(ValueError, match="image_size"):
        PaperCNN(image_size=2)
    with pytest.raises(ValueError, match="num_classes"):
        PaperCNN(num_classes=0)


@pytest.mark.parametrize("size, flat", [(28, 16 * 5 * 5), (8, 16 * 2 * 2), (32, 16 * 6 * 6), (4, 16)])
def test_lenet5_shapes(size: int, flat: int) -> None:
    net = LeNet5(image_size=size, num_classes=7)
    assert net.fc1.in_features == flat
    assert net(torch.rand(3, 1, size, size)).shape == (3, 7)
    assert [n for n, _ in net.named_parameters() if n.endswith("weight")] == [
        "conv1.weight",
        "conv2.weight",
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
    ]


def test_lenet5_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        LeNet5(image_size=3)


def test_mlp_layers_and_gradients() -> None:
    net = MLP(in_features=64, hidden=[32, 16], num_classes=10)
    assert [(n, tuple(p.shape)) for n, p in net.named_parameters() if n.endswith("weight")] == [
        ("fc1.weight", (32, 64)),
        ("fc2.weight", (16, 32)),
        ("fc3.weight", (10, 16)),
    ]
    out = net(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert MLP(4, [], 3)(torch.rand(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"hidden\[1\]"):
        MLP(4, [8, 0], 3)


def test_resnet18_has_torchvisions_parameters_but_a_small_image_stem() -> None:
    from responsibility.experiments.models import ResNet18

    model = ResNet18(in_channels=1, num_classes=10)
    # torchvision's resnet18 with 10 classes has 11,181,642 parameters; its 7x7 stem on 3 channels (9,408 weights)
    # is a 3x3 stem on 1 channel here (576).
    assert sum(p.numel() for p in model.parameters()) == 11_181_642 - 9_408 + 576
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
