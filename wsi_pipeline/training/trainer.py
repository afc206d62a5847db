"""A small shared training loop: Adam, plateau learning-rate decay, best-on-validation weights.

Task modules (``nuclei``, later ``mitosis``) supply a batch sampler and a loss; the loop is
the same on CPU and GPU (the device is a parameter, nothing else changes).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

#: sampler(rng) -> (inputs, targets), tensors or tuples of tensors on the CPU
Sampler = Callable[[np.random.Generator], tuple]
#: loss(model, inputs, targets) -> scalar tensor
LossFn = Callable[[torch.nn.Module, object, object], torch.Tensor]


@dataclass
class FitResult:
    """History of one run: per-epoch train/val loss and learning rate; best epoch."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    return obj


def fit(
    model: torch.nn.Module,
    *,
    sample_train: Sampler,
    loss_fn: LossFn,
    val_batches: list[tuple],
    epochs: int,
    steps_per_epoch: int,
    device: torch.device,
    lr: float = 3e-4,
    plateau_patience: int = 10,
    plateau_factor: float = 0.5,
    time_limit_s: float | None = None,
    anneal: bool = False,
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitResult:
    """Train ``model`` in place; at the end it holds the weights of the best validation epoch.

    val_batches : fixed (inputs, targets) batches scored after every epoch (the mean loss
    decides the best epoch and drives the plateau decay). ``time_limit_s`` stops after the
    epoch that crosses it. ``anneal``: instead of the plateau decay, the learning rate follows
    a cosine from ``lr`` down to ``lr / 20`` over the run (over ``time_limit_s`` when given,
    else over ``epochs * steps_per_epoch`` steps): short runs end at a small learning rate.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=plateau_factor, patience=plateau_patience)
    result, best, best_state = FitResult(), np.inf, None
    start = time.perf_counter()
    total_steps, step = epochs * steps_per_epoch, 0
    for epoch in range(epochs):
        model.train()
        losses = []
        for _ in range(steps_per_epoch):
            if anneal:
                done = (time.perf_counter() - start) / time_limit_s if time_limit_s else step / total_steps
                for group in opt.param_groups:
                    group["lr"] = lr * cosine_factor(done)
            step += 1
            inputs, targets = to_device(sample_train(rng), device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, inputs, targets)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        val = evaluate(model, loss_fn, val_batches, device)
        if not anneal:
            sched.step(val)
        result.train_loss.append(float(np.mean(losses)))
        result.val_loss.append(val)
        result.lr.append(opt.param_groups[0]["lr"])
        if val < best:
            best, best_state, result.best_epoch = val, copy.deepcopy(model.state_dict()), epoch
        log.info("epoch %d/%d: loss %.4f, val %.4f, lr %.2g", epoch + 1, epochs, result.train_loss[-1], val, result.lr[-1])
        if on_epoch is not None:
            on_epoch(epoch, result.train_loss[-1], val)
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            result.stopped_early = epoch + 1 < epochs
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result


def cosine_factor(fraction: float, *, floor: float = 0.05) -> float:
    """Learning-rate multiplier at ``fraction`` (0..1, clipped) of a run: 1 -> ``floor``."""
    f = min(max(fraction, 0.0), 1.0)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * f))


def evaluate(model: torch.nn.Module, loss_fn: LossFn, batches: list[tuple], device: torch.device) -> float:
    """Mean loss of ``model`` over fixed batches (eval mode, no gradients)."""
    if not batches:
        return 0.0
    model.eval()
    with torch.no_grad():
        return float(np.mean([float(loss_fn(model, *to_device(b, device))) for b in batches]))
