"""Stochastic gradient descent with PyTorch's update rule, and learning-rate schedules.

A schedule is a function from the step index (0 for the first optimiser step) to the learning
rate of that step:

    constant   lr(s) = peak
    cosine     lr(s) = peak * (1 + cos(pi * s / total)) / 2
    onecycle   lr(s) = peak * (s + 1) / w                            for s < w (linear warm-up)
               lr(s) = peak * (1 + cos(pi * (s - w) / (total - w))) / 2   afterwards
               where w = round(warmup * total) warm-up steps

Past `total` steps the cosine schedules stay at 0.
"""

from __future__ import annotations

import math

import numpy as np

SCHEDULES = ("constant", "cosine", "onecycle")


def _cosine_decay(peak, done, length):
    progress = min(done / length, 1.0)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_schedule(name, peak_lr, total_steps, warmup=0.0):
    """The schedule `name` (one of SCHEDULES) peaking at peak_lr over total_steps steps;
    warmup is the fraction of the steps spent rising linearly (onecycle only)."""
    if name == "constant":
        return lambda step: peak_lr
    if name == "cosine":
        return lambda step: _cosine_decay(peak_lr, step, total_steps)
    if name == "onecycle":
        warmup_steps = round(warmup * total_steps)

        def onecycle(step):
            if step < warmup_steps:
                return peak_lr * (step + 1) / warmup_steps
            return _cosine_decay(peak_lr, step - warmup_steps, max(total_steps - warmup_steps, 1))

        return onecycle
    msg = f"unknown schedule {name!r}, expected one of {', '.join(SCHEDULES)}"
    raise ValueError(msg)


class SGD:
    """SGD with momentum, Nesterov momentum and L2 weight decay, updating exactly as
    torch.optim.SGD (dampening 0) does, in float32:

        g = grad + weight_decay * p
        buf = g on the first step, else momentum * buf + g
        g = g + momentum * buf if nesterov else buf
        p -= lr * g

    Biases (parameters whose name ends in "bias") get no weight decay unless decay_biases.
    `lr` is a number or a schedule, a function of the step index.
    """

    def __init__(self, lr, *, momentum=0.0, nesterov=False, weight_decay=0.0,
                 decay_biases=False):
        if nesterov and momentum <= 0:
            msg = f"Nesterov momentum needs momentum > 0, got {momentum}"
            raise ValueError(msg)
        self.schedule = lr if callable(lr) else (lambda step: lr)
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.decay_biases = decay_biases
        self.steps = 0
        self.buffers = {}

    @property
    def lr(self):
        """The learning rate the next step will use."""
        return self.schedule(self.steps)

    def step(self, parameters):
        """Update each param of the (name, param, grad) triples in place."""
        lr = np.float32(self.lr)
        for name, param, grad in parameters:
            g = grad
            if self.weight_decay and (self.decay_biases or not name.endswith("bias")):
                g = grad + np.float32(self.weight_decay) * param

            if self.momentum:
                buf = self.buffers.get(name)
                if buf is None:
                    buf = self.buffers[name] = g.copy()
                else:
                    buf *= np.float32(self.momentum)
                    buf += g
                g = g + np.float32(self.momentum) * buf if self.nesterov else buf

            param -= lr * g
        self.steps += 1

    def state_dict(self):
        """The step count and momentum buffers as arrays (keys "steps", "momentum/<name>")."""
        state = {"steps": np.array(self.steps, np.int64)}
        state.update({f"momentum/{name}": buf for name, buf in self.buffers.items()})
        return state

    def load_state_dict(self, state):
        if "steps" not in state:
            msg = "optimiser state without a step count"
            raise ValueError(msg)
        self.steps = int(state["steps"])
        self.buffers = {key.removeprefix("momentum/"): np.array(value, np.float32)
                        for key, value in state.items() if key.startswith("momentum/")}
