"""Plain torch models used in the experiments.

Layers are named attributes (``conv``, ``fc1``, ...) so that parameter names such as ``fc2.weight`` are stable
and can be selected by name or glob pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BasicBlock", "LeNet5", "MLP", "PaperCNN", "ResNet18"]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class PaperCNN(nn.Module):
    """The small CNN of Khadivpour & Guzdial: conv 3x3 (no padding) -> ReLU -> fc -> ReLU -> fc.

    For 28x28 single-channel input, ``fc1`` has ``8 * 26 * 26 * 128 = 692,224`` weights.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        conv_channels: int = 8,
        hidden: int = 128,
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes, conv_channels=conv_channels, hidden=hidden)
        if image_size < 3:
            raise ValueError(f"image_size must be at least 3 for a 3x3 convolution, got {image_size}")
        self.conv = nn.Conv2d(in_channels, conv_channels, kernel_size=3)
        self.fc1 = nn.Linear(conv_channels * (image_size - 2) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling: conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> fc 120 -> fc 84 -> fc.

    ``conv1`` uses padding 2, so 28x28 input gives the classic 16x5x5 feature map. Small inputs would vanish
    under the unpadded ``conv2``, so when the map after the first pooling is narrower than 10 pixels ``conv2``
    is padded by 2 as well: 8x8 digits give 16x2x2. Inputs must be at least 4x4.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes)
        if image_size < 4:
            raise ValueError(f"image_size must be at least 4, got {image_size}")
        size = image_size // 2  # conv1 keeps the size, pool halves it
        conv2_padding = 0 if size >= 10 else 2
        size = (size + 2 * conv2_padding - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5, padding=conv2_padding)
        self.fc1 = nn.Linear(16 * size * size, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class MLP(nn.Module):
    """Fully connected ReLU network on flattened input; layers are ``fc1 .. fc{len(hidden)+1}``."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        _check_positive(in_features=in_features, num_classes=num_classes)
        _check_positive(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        self.num_layers = len(sizes) - 1
        for i in range(self.num_layers):
            self.add_module(f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(1, self.num_layers):
            x = F.relu(getattr(self, f"fc{i}")(x))
        return getattr(self, f"fc{self.num_layers}")(x)


class BasicBlock(nn.Module):
    """ResNet's basic block (torchvision's names): two 3x3 conv-BatchNorm pairs and a shortcut, projected by a 1x1
    conv-BatchNorm when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        _check_positive(cin=cin, cout=cout, stride=stride)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al.: four stages of two basic blocks, 64 to 512 channels, 11.2M parameters for one input
    channel) for small images: a 3x3 stem without max pooling, as CIFAR-style ResNets do."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        stages: list[nn.Module] = []
        cin = 64
        for i, width in enumerate((64, 128, 256, 512)):
            stages += [BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width)]
            cin = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1))
