"""The bridge between tinyconv's layers and PyTorch's torch.nn modules, for
Sequential.to_torch and Sequential.from_torch, which import this module (and so torch) only
when they run."""

from __future__ import annotations

import torch.nn as nn

from .model import Conv2d, Flatten, MaxPool2d, ReLU, describe_layer


def torch_layer(layer):
    """The torch.nn module that computes what a tinyconv layer computes (weights not copied)."""
    if isinstance(layer, Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                         stride=layer.stride, padding=layer.padding)
    if isinstance(layer, ReLU):
        return nn.ReLU(inplace=layer.inplace)
    if isinstance(layer, MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    return nn.Linear(layer.in_features, layer.out_features)


def _square(value, what, index):
    """An int from a PyTorch size argument that is an int or a pair of equal ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if isinstance(value, str) or pair[0] != pair[1]:
        msg = f"layer {index}: non-square {what} {pair} is not supported"
        raise ValueError(msg)
    return pair[0]


def describe_torch_layer(index, layer):
    """The tinyconv description of a PyTorch layer, or ValueError if tinyconv has no such
    layer."""
    if isinstance(layer, nn.Conv2d):
        plain = (layer.bias is not None and layer.groups == 1
                 and _square(layer.dilation, "dilation", index) == 1
                 and layer.padding_mode == "zeros")
        if not plain:
            msg = (f"layer {index}: only Conv2d with bias, no groups, no dilation and zero "
                   f"padding is supported, got {layer}")
            raise ValueError(msg)
        return describe_layer("Conv2d", {
            "in_channels": layer.in_channels, "out_channels": layer.out_channels,
            "kernel_size": _square(layer.kernel_size, "kernel_size", index),
            "stride": _square(layer.stride, "stride", index),
            "padding": _square(layer.padding, "padding", index)})
    if isinstance(layer, nn.ReLU):
        return ReLU().describe()
    if isinstance(layer, nn.MaxPool2d):
        plain = (_square(layer.padding, "padding", index) == 0
                 and _square(layer.dilation, "dilation", index) == 1 and not layer.ceil_mode)
        if not plain:
            msg = (f"layer {index}: only MaxPool2d without padding, dilation or ceil_mode is "
                   f"supported, got {layer}")
            raise ValueError(msg)
        return describe_layer("MaxPool2d", {
            "kernel_size": _square(layer.kernel_size, "kernel_size", index),
            "stride": _square(layer.stride, "stride", index)})
    if isinstance(layer, nn.Flatten):
        if layer.start_dim != 1 or layer.end_dim != -1:
            msg = f"layer {index}: only Flatten(1, -1) is supported, got {layer}"
            raise ValueError(msg)
        return Flatten().describe()
    if isinstance(layer, nn.Linear) and layer.bias is not None:
        return describe_layer("Linear", {"in_features": layer.in_features,
                                         "out_features": layer.out_features})
    msg = f"layer {index}: {layer} has no tinyconv counterpart"
    raise ValueError(msg)
