"""The notebook's CNN, with its backward pass, on the tinyconv kernels.

Each layer holds its parameters and their gradients as float32 NumPy arrays, runs `forward(x)`
and `backward(dy)`, and keeps from the forward pass only what its backward pass reads. As in
the notebook, fully connected weights are laid out (in, out), and the size of the flattened
features is found by pushing a dummy batch through the convolutional part.

The default network, `cifar_cnn()`, is

    conv 3x3 3->16, ReLU, conv 3x3 16->32, ReLU, max-pool 2x2
    conv 3x3 32->64, ReLU, conv 3x3 64->128, ReLU, max-pool 2x2
    flatten (128*8*8 = 8192), linear 8192->128, ReLU, linear 128->10

trained with softmax cross-entropy.
"""

from __future__ import annotations

import json

import numpy as np

from . import ops


def he_normal(shape, fan_in, rng):
    """Draw float32 weights from N(0, 2 / fan_in), the He initialisation for ReLU networks."""
    std = np.float32(np.sqrt(2.0 / fan_in))
    return rng.standard_normal(shape, dtype=np.float32) * std


def init_conv2_params(filters, channels, kernel_size, rng):
    """He-normal kernels (filters, channels, kernel_size, kernel_size) and zero biases."""
    fan_in = channels * kernel_size * kernel_size
    weight = he_normal((filters, channels, kernel_size, kernel_size), fan_in, rng)
    return weight, np.zeros(filters, np.float32)


def init_fc_params(neurons, flatten, rng):
    """He-normal weights laid out (flatten, neurons), i.e. (in, out), and zero biases."""
    weight = he_normal((flatten, neurons), flatten, rng)
    return weight, np.zeros(neurons, np.float32)


def describe_layer(type_name, config):
    """A layer as a constructor call, e.g. "MaxPool2d(kernel_size=2, stride=2)"."""
    args = ", ".join(f"{key}={value}" for key, value in config.items())
    return f"{type_name}({args})"


class Layer:
    """A step of the network. Subclasses with parameters list their names in `param_names`;
    each parameter `p` has its gradient in the attribute `p + "_grad"`."""

    param_names: tuple[str, ...] = ()

    def config(self):
        """The constructor arguments, enough to build the same layer again."""
        return {}

    def describe(self):
        """What the layer computes, as a constructor call."""
        return describe_layer(type(self).__name__, self.config())

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, input_grad=True):
        """Set the parameter gradients from dy and return the gradient with respect to the
        input (None when input_grad is False)."""
        raise NotImplementedError


class Conv2d(Layer):
    """y = conv(x, weight) + bias, NCHW. Keeps its input for the weight gradient."""

    param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size=3, *, stride=1, padding=1,
                 rng=None):
        rng = np.random.default_rng() if rng is None else rng
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight, self.bias = init_conv2_params(out_channels, in_channels, kernel_size, rng)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias_grad = np.zeros_like(self.bias)
        self.x = None

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding}

    def forward(self, x):
        self.x = x
        return ops.conv2d_forward(x, self.weight, self.bias, stride=self.stride,
                                  padding=self.padding)

    def backward(self, dy, input_grad=True):
        dx, self.weight_grad, self.bias_grad = ops.conv2d_backward(
            self.x, self.weight, dy, stride=self.stride, padding=self.padding,
            input_grad=input_grad)
        return dx


class ReLU(Layer):
    """y = max(x, 0). Keeps its output, which says where the gradient passes. With
    inplace=True it overwrites its input on the way forward and dy on the way back, which
    saves two allocations but must not be used where the caller still needs the input."""

    def __init__(self, *, inplace=False):
        self.inplace = inplace
        self.y = None

    def config(self):
        return {"inplace": self.inplace}

    def describe(self):
        return "ReLU()"  # in place or not, the function is the same

    def forward(self, x):
        self.y = ops.relu_forward(x, out=x if self.inplace else None)
        return self.y

    def backward(self, dy, input_grad=True):
        if not input_grad:
            return None
        return ops.relu_backward(self.y, dy, out=dy if self.inplace else None)


class MaxPool2d(Layer):
    """The maximum of each kernel_size x kernel_size window. Keeps the position each maximum
    came from and the input shape, so that the gradient can be routed back."""

    def __init__(self, kernel_size=2, stride=None):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.indices = None
        self.input_shape = None

    def config(self):
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def forward(self, x):
        self.input_shape = x.shape
        y, self.indices = ops.maxpool2d_forward(x, kernel_size=self.kernel_size,
                                                stride=self.stride)
        return y

    def backward(self, dy, input_grad=True):
        if not input_grad:
            return None
        return ops.maxpool2d_backward(dy, self.indices, self.input_shape,
                                      kernel_size=self.kernel_size, stride=self.stride)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), a view: the gateway from the convolutions to the fully
    connected layers."""

    def __init__(self):
        self.input_shape = None

    def forward(self, x):
        self.input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, input_grad=True):
        return dy.reshape(self.input_shape) if input_grad else None


class Linear(Layer):
    """y = x @ weight + bias with weight (in, out). Keeps its input for the weight gradient."""

    param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, *, rng=None):
        rng = np.random.default_rng() if rng is None else rng
        self.in_features, self.out_features = in_features, out_features
        self.weight, self.bias = init_fc_params(out_features, in_features, rng)
        self.weight_grad = np.zeros_like(self.weight)
        self.bias_grad = np.zeros_like(self.bias)
        self.x = None

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features}

    def forward(self, x):
        self.x = x
        return ops.linear_forward(x, self.weight, self.bias)

    def backward(self, dy, input_grad=True):
        dx, self.weight_grad, self.bias_grad = ops.linear_backward(
            self.x, self.weight, dy, input_grad=input_grad)
        return dx


LAYER_TYPES = {cls.__name__: cls for cls in (Conv2d, ReLU, MaxPool2d, Flatten, Linear)}


def first_difference(ours, theirs):
    """Where two layer descriptions part, as a sentence; None when they agree."""
    for index, (mine, other) in enumerate(zip(ours, theirs)):
        if mine != other:
            return f"layer {index} is {other}, expected {mine}"
    if len(ours) != len(theirs):
        return f"{len(theirs)} layers, expected {len(ours)}"
    return None


class Sequential:
    """Layers run one after another; the last one returns the logits."""

    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        """Back-propagate dy, the gradient of the loss with respect to the logits. The input
        of the first layer is the data, so its gradient is never computed."""
        for layer in reversed(self.layers[1:]):
            dy = layer.backward(dy)
        self.layers[0].backward(dy, input_grad=False)

    def loss_and_grad(self, x, labels):
        """Mean softmax cross-entropy of the batch; fills every parameter gradient.
        Returns (loss, logits)."""
        logits = self.forward(x)
        loss, dlogits = ops.softmax_cross_entropy(logits, labels)
        self.backward(dlogits)
        return loss, logits

    def predict_proba(self, x):
        """Class probabilities (N, classes) for the batch x."""
        return ops.softmax(self.forward(x))

    def parameters(self):
        """(name, param, grad) triples in a fixed order, named like PyTorch's state_dict keys
        ("0.weight", "0.bias", ...). Call it after backward: the gradients are new arrays."""
        return [(f"{index}.{name}", getattr(layer, name), getattr(layer, name + "_grad"))
                for index, layer in enumerate(self.layers) for name in layer.param_names]

    def state_dict(self):
        return {name: param for name, param, _ in self.parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters, checking that every name and shape matches."""
        ours = {name: param for name, param, _ in self.parameters()}
        if set(ours) != set(state):
            missing, extra = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
            msg = f"parameter names differ: missing {missing}, unexpected {extra}"
            raise ValueError(msg)
        for name, param in ours.items():
            value = np.asarray(state[name])
            if value.shape != param.shape:
                msg = f"parameter {name}: shape {value.shape}, expected {param.shape}"
                raise ValueError(msg)
            param[...] = value

    def config(self):
        """The architecture as a JSON string, from which `from_config` rebuilds the model."""
        return json.dumps([{"type": type(layer).__name__, **layer.config()}
                           for layer in self.layers])

    @classmethod
    def from_config(cls, text):
        """A model with the architecture `config()` wrote (weights freshly initialised)."""
        try:
            specs = json.loads(text)
            return cls(LAYER_TYPES[spec.pop("type")](**spec) for spec in specs)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            msg = f"not a tinyconv architecture: {text[:80]!r}"
            raise ValueError(msg) from error

    def architecture(self):
        """One description per layer: two models with equal architectures can exchange
        weights."""
        return [layer.describe() for layer in self.layers]

    def to_torch(self):
        """An equivalent torch.nn.Sequential holding copies of these weights (Linear weights
        transposed to PyTorch's (out, in) layout)."""
        import torch

        from .interop import torch_layer

        modules = [torch_layer(layer) for layer in self.layers]
        module = torch.nn.Sequential(*modules)
        with torch.no_grad():
            for name, param, _ in self.parameters():
                value = param.T if name.endswith("weight") and param.ndim == 2 else param
                module.get_parameter(name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return module

    def from_torch(self, module):
        """Copy the weights of an equivalent torch.nn.Sequential into this model and return it.
        Raises ValueError naming the first layer that differs."""
        from .interop import describe_torch_layer

        theirs = [describe_torch_layer(index, layer) for index, layer in enumerate(module)]
        difference = first_difference(self.architecture(), theirs)
        if difference is not None:
            msg = f"the torch model does not match: {difference}"
            raise ValueError(msg)
        state = {}
        for name, tensor in module.state_dict().items():
            value = tensor.detach().cpu().numpy().astype(np.float32)
            state[name] = value.T if value.ndim == 2 else value
        self.load_state_dict(state)
        return self


def cifar_cnn(*, seed=0, image_shape=(3, 32, 32), num_classes=10):
    """The notebook's network, He-initialised from a Generator seeded with `seed` (an int or a
    numpy SeedSequence).

    The convolutions keep the image size (padding 1) and each pool halves it; the first
    fully connected layer's width is measured with a dummy batch, as the notebook does."""
    rng = np.random.default_rng(seed)
    features = [
        Conv2d(image_shape[0], 16, rng=rng), ReLU(inplace=True),
        Conv2d(16, 32, rng=rng), ReLU(inplace=True), MaxPool2d(2),
        Conv2d(32, 64, rng=rng), ReLU(inplace=True),
        Conv2d(64, 128, rng=rng), ReLU(inplace=True), MaxPool2d(2),
        Flatten(),
    ]

    dummy = np.zeros((1, *image_shape), np.float32)
    flatten_size = Sequential(features).forward(dummy).shape[1]

    classifier = [
        Linear(flatten_size, 128, rng=rng), ReLU(inplace=True),
        Linear(128, num_classes, rng=rng),
    ]
    return Sequential(features + classifier)
