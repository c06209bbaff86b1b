"""The network against PyTorch: same weights, same batch, same logits, loss and gradients."""

import numpy as np
import pytest
import torch
from conftest import assert_close

from tinyconv import model as model_module
from tinyconv.model import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, cifar_cnn


@pytest.fixture(scope="module")
def cnn():
    return cifar_cnn(seed=7)


def batch(rng, n=16, classes=10, shape=(3, 32, 32)):
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    return x, rng.integers(0, classes, n)


def test_cifar_cnn_matches_torch_logits_loss_and_every_gradient(cnn, rng, isa):
    x, labels = batch(rng)
    reference = cnn.to_torch().double()

    loss, logits = cnn.loss_and_grad(x.copy(), labels)

    torch_logits = reference(torch.from_numpy(x).double())
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, torch.from_numpy(labels))
    torch_loss.backward()
    assert_close(logits, torch_logits.detach().numpy(), rtol=1e-4)
    assert abs(loss - torch_loss.item()) <= 1e-4 * abs(torch_loss.item())
    grads = dict(reference.named_parameters())
    for name, param, grad in cnn.parameters():
        expected = grads[name].grad.numpy()
        expected = expected.T if param.ndim == 2 else expected
        assert grad.shape == param.shape, name
        assert_close(grad, expected, rtol=1e-4)


def test_flatten_size_is_measured_with_a_dummy_batch():
    net = cifar_cnn(seed=0, image_shape=(3, 16, 16), num_classes=4)

    first_fc = next(layer for layer in net.layers if isinstance(layer, Linear))
    assert first_fc.in_features == 128 * 4 * 4
    assert net.forward(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 4)


def test_he_initialisation_is_seeded_with_the_right_spread_and_zero_biases():
    first, again, other = cifar_cnn(seed=3), cifar_cnn(seed=3), cifar_cnn(seed=4)

    for (name, w, _), (_, w_again, _), (_, w_other, _) in zip(
            first.parameters(), again.parameters(), other.parameters()):
        assert w.dtype == np.float32 and w.flags.c_contiguous, name
        assert np.array_equal(w, w_again), name
        if name.endswith("bias"):
            assert not w.any(), name
            continue
        assert not np.array_equal(w, w_other), name
        fan_in = w.shape[0] if w.ndim == 2 else w[0].size
        assert abs(w.std() / np.sqrt(2 / fan_in) - 1) < 0.1, name


def test_fully_connected_weights_are_laid_out_in_by_out(cnn):
    shapes = {name: param.shape for name, param, _ in cnn.parameters()}

    assert shapes["11.weight"] == (8192, 128)
    assert shapes["13.weight"] == (128, 10)
    assert shapes["0.weight"] == (16, 3, 3, 3)


def test_first_convolution_skips_its_input_gradient(cnn, rng, monkeypatch):
    asked = []
    real = model_module.ops.conv2d_backward

    def recording(*args, input_grad=True, **kwargs):
        asked.append(input_grad)
        return real(*args, input_grad=input_grad, **kwargs)

    monkeypatch.setattr(model_module.ops, "conv2d_backward", recording)
    cnn.loss_and_grad(*batch(rng, n=2))

    assert asked == [True, True, True, False]  # backward runs last layer first


def test_relu_in_place_or_not_gives_the_same_values_and_gradients(rng):
    x = rng.standard_normal((3, 5), dtype=np.float32)
    dy = rng.standard_normal((3, 5), dtype=np.float32)
    copying, in_place = ReLU(), ReLU(inplace=True)

    x_before = x.copy()
    y = copying.forward(x)
    dx = copying.backward(dy)
    assert np.array_equal(x, x_before) and y is not x

    y_in_place = in_place.forward(x)
    assert np.array_equal(y_in_place, y) and y_in_place is x
    assert np.array_equal(in_place.backward(dy), dx)
    assert np.array_equal(dx, np.where(y > 0, dy, 0))


def test_predict_proba_rows_are_distributions(cnn, rng):
    probs = cnn.predict_proba(batch(rng, n=4)[0])

    assert probs.shape == (4, 10)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and (probs >= 0).all()


def test_to_torch_then_from_torch_gives_back_the_same_weights(cnn):
    copy = cifar_cnn(seed=99).from_torch(cnn.to_torch())

    for (name, ours, _), (_, back, _) in zip(cnn.parameters(), copy.parameters()):
        assert np.array_equal(ours, back), name


def test_to_torch_transposes_linear_weights(cnn):
    module = cnn.to_torch()

    assert np.array_equal(module[11].weight.detach().numpy(), cnn.layers[11].weight.T)
    assert isinstance(module[4], torch.nn.MaxPool2d) and module[1].inplace


def test_from_torch_names_the_first_layer_that_differs(cnn):
    module = cnn.to_torch()
    module[5] = torch.nn.Conv2d(32, 48, 3, padding=1)

    with pytest.raises(ValueError, match=r"layer 5 is Conv2d\(.*out_channels=48"):
        cifar_cnn(seed=0).from_torch(module)


def test_from_torch_rejects_layers_tinyconv_does_not_have(cnn):
    module = cnn.to_torch()
    module[1] = torch.nn.Tanh()

    with pytest.raises(ValueError, match="layer 1: Tanh"):
        cifar_cnn(seed=0).from_torch(module)


def test_from_torch_rejects_a_shorter_model(cnn):
    module = torch.nn.Sequential(*list(cnn.to_torch())[:-1])

    with pytest.raises(ValueError, match="13 layers, expected 14"):
        cifar_cnn(seed=0).from_torch(module)


def test_config_rebuilds_the_same_architecture(rng):
    net = Sequential([Conv2d(1, 2, 5, stride=2, padding=0, rng=rng), ReLU(), MaxPool2d(3, 1),
                      Flatten(), Linear(8, 3, rng=rng)])

    rebuilt = Sequential.from_config(net.config())

    assert rebuilt.architecture() == net.architecture()
    assert [type(layer) for layer in rebuilt.layers] == [type(layer) for layer in net.layers]


@pytest.mark.parametrize("text", ["not json", '[{"type": "Softplus"}]', '[{"type": "Linear"}]'])
def test_from_config_rejects_what_it_cannot_build(text):
    with pytest.raises(ValueError, match="not a tinyconv architecture"):
        Sequential.from_config(text)


def test_load_state_dict_checks_names_and_shapes(cnn):
    state = {name: param.copy() for name, param, _ in cnn.parameters()}
    state["13.bias"] = np.zeros(11, np.float32)

    with pytest.raises(ValueError, match=r"13.bias: shape \(11,\), expected \(10,\)"):
        cnn.load_state_dict(state)
    del state["13.bias"]
    with pytest.raises(ValueError, match=r"missing \['13.bias'\]"):
        cnn.load_state_dict(state)
