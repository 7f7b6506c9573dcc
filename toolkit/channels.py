"""The shape of a channel-pruned ResNet50: per-conv output widths, read from a network and applied to one.

A pruned checkpoint stores plain tensors plus `meta.arch_config["channels"]` (the widths that differ from a stock
resnet50); `models.build_model` rebuilds that network with `apply_channels` before loading the tensors, so pruned
checkpoints load with `torch.load(weights_only=True)` like any other.
"""

from __future__ import annotations

from torch import nn

from toolkit.errors import RtkError


def apply_channels(model: nn.Module, channels: dict[str, int]) -> nn.Module:
    """Resize a torchvision bottleneck ResNet in place to the conv output widths in `channels`.

    Input widths follow from the topology (a block's input is the previous block's conv3 output), batch norms
    follow their conv, and fc takes the last block's width with its class count unchanged.
    """
    from torchvision.models.resnet import Bottleneck

    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    bad = [k for k, v in channels.items() if k not in convs or not isinstance(v, int) or v < 1]
    if bad:
        raise RtkError(f"arch_config channels entry {bad[0]!r} does not fit resnet50; the checkpoint is damaged, prune again")

    def width(name: str, conv: nn.Conv2d) -> int:
        return int(channels.get(name, conv.out_channels))

    prev = width("conv1", model.conv1)
    model.conv1, model.bn1 = _conv(model.conv1, 3, prev), _bn(model.bn1, prev)
    for lname in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, lname)):
            if not isinstance(block, Bottleneck):
                raise RtkError(f"{lname}.{i} is not a bottleneck block; only resnet50 channel configs are supported")
            p = f"{lname}.{i}"
            c1, c2, c3 = width(f"{p}.conv1", block.conv1), width(f"{p}.conv2", block.conv2), width(f"{p}.conv3", block.conv3)
            block.conv1, block.bn1 = _conv(block.conv1, prev, c1), _bn(block.bn1, c1)
            block.conv2, block.bn2 = _conv(block.conv2, c1, c2), _bn(block.bn2, c2)
            block.conv3, block.bn3 = _conv(block.conv3, c2, c3), _bn(block.bn3, c3)
            if block.downsample is not None:
                if width(f"{p}.downsample.0", block.downsample[0]) != c3:
                    raise RtkError(f"arch_config channels: {p}.downsample.0 and {p}.conv3 differ; the checkpoint is damaged")
                block.downsample[0] = _conv(block.downsample[0], prev, c3)
                block.downsample[1] = _bn(block.downsample[1], c3)
            elif prev != c3:
                raise RtkError(f"arch_config channels: {p} adds {prev} to {c3} channels; the checkpoint is damaged")
            prev = c3
    if model.fc.in_features != prev:
        model.fc = nn.Linear(prev, model.fc.out_features)
    return model


def _conv(conv: nn.Conv2d, cin: int, cout: int) -> nn.Conv2d:
    if (conv.in_channels, conv.out_channels) == (cin, cout):
        return conv
    return nn.Conv2d(cin, cout, conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                     groups=conv.groups, bias=conv.bias is not None)


def _bn(bn: nn.BatchNorm2d, n: int) -> nn.BatchNorm2d:
    return bn if bn.num_features == n else nn.BatchNorm2d(n, eps=bn.eps, momentum=bn.momentum)


def channel_config(model: nn.Module, num_classes: int) -> dict[str, int]:
    """{conv name: out_channels} for every conv whose width differs from a stock resnet50."""
    from torchvision.models import resnet50

    stock = {n: m.out_channels for n, m in resnet50(num_classes=num_classes).named_modules() if isinstance(m, nn.Conv2d)}
    return {n: m.out_channels for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.out_channels != stock[n]}


__all__ = ["apply_channels", "channel_config"]
