from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from snn import losses
from snn.errors import SpikeforgeError
from snn.losses import MembraneCrossEntropy, RateMSE, SpikeCountCrossEntropy

T, B, C = 6, 4, 3


def make_spikes(seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((T, B, C), 0.4), generator=torch.Generator().manual_seed(seed))


TARGET = torch.tensor([0, 2, 1, 2])


# --- readouts -----------------------------------------------------------------------------

def test_spike_count_and_rate():
    spikes = make_spikes()
    manual = sum(spikes[t] for t in range(T))
    assert torch.equal(losses.spike_count(spikes), manual)
    assert torch.allclose(losses.spike_rate(spikes), manual / T)


def test_readouts_accept_bool_spikes():
    spikes = make_spikes().bool()
    assert losses.spike_count(spikes).dtype == torch.get_default_dtype()
    assert torch.equal(losses.spike_count(spikes), make_spikes().sum(0))


# --- losses equal hand computations -------------------------------------------------------

def test_spike_count_cross_entropy_hand_computed():
    spikes = make_spikes()
    counts = sum(spikes[t] for t in range(T))
    log_softmax = counts - counts.exp().sum(1, keepdim=True).log()
    manual = -log_softmax[torch.arange(B), TARGET].mean()
    assert torch.allclose(losses.spike_count_cross_entropy(spikes, TARGET), manual)
    assert torch.allclose(SpikeCountCrossEntropy()(spikes, TARGET), manual)


def test_rate_mse_hand_computed():
    spikes = make_spikes(1)
    rates = spikes.sum(0) / T
    wanted = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])
    manual = ((rates - wanted) ** 2).sum() / (B * C)
    assert torch.allclose(losses.rate_mse(spikes, TARGET, on_rate=0.9, off_rate=0.1), manual)
    assert torch.allclose(RateMSE(on_rate=0.9, off_rate=0.1)(spikes, TARGET), manual)


def test_rate_mse_is_zero_at_target_rates():
    # T = 5: the target neuron fires 4 times (0.8), the others once (0.2).
    spikes = torch.zeros(5, 2, 3)
    spikes[:4, 0, 1] = 1
    spikes[:1, 0, [0, 2]] = 1
    spikes[:4, 1, 0] = 1
    spikes[:1, 1, [1, 2]] = 1
    assert losses.rate_mse(spikes, torch.tensor([1, 0])).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "max", "last"])
def test_membrane_cross_entropy_hand_computed(reduction):
    membrane = torch.randn(T, B, C, generator=torch.Generator().manual_seed(2))
    reduced = {
        "mean": sum(membrane[t] for t in range(T)) / T,
        "max": torch.stack([membrane[:, b, c].max() for b in range(B) for c in range(C)]).view(B, C),
        "last": membrane[T - 1],
    }[reduction]
    manual = F.nll_loss(F.log_softmax(reduced, dim=1), TARGET)
    assert torch.allclose(losses.membrane_cross_entropy(membrane, TARGET, reduction=reduction), manual)
    assert torch.allclose(MembraneCrossEntropy(reduction)(membrane, TARGET), manual)


def test_membrane_cross_entropy_default_is_mean():
    membrane = torch.randn(T, B, C, generator=torch.Generator().manual_seed(3))
    assert torch.equal(losses.membrane_cross_entropy(membrane, TARGET),
                       losses.membrane_cross_entropy(membrane, TARGET, reduction="mean"))


# --- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("loss", [
    lambda x: losses.spike_count_cross_entropy(x, TARGET),
    lambda x: losses.rate_mse(x, TARGET),
    lambda x: losses.membrane_cross_entropy(x, TARGET, "mean"),
    lambda x: losses.membrane_cross_entropy(x, TARGET, "max"),
    lambda x: losses.membrane_cross_entropy(x, TARGET, "last"),
])
def test_gradients_flow(loss):
    x = make_spikes(4).clone().requires_grad_(True)
    value = loss(x)
    assert value.ndim == 0 and math.isfinite(value.item())
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# --- predictions and accuracy -------------------------------------------------------------

# One sample, three classes, T = 3, built so that each reduction picks a different class:
#   class 0: [0, 0, 3] -> mean 1,   max 3, last 3
#   class 1: [2, 2, 2] -> mean 2,   max 2, last 2
#   class 2: [4, 1, 0] -> mean 5/3, max 4, last 0
MEMBRANE = torch.tensor([[0.0, 2.0, 4.0], [0.0, 2.0, 1.0], [3.0, 2.0, 0.0]]).view(3, 1, 3)


@pytest.mark.parametrize("kind, expected", [("membrane_mean", 1), ("membrane_max", 2), ("membrane_last", 0)])
def test_predict_membrane_kinds(kind, expected):
    prediction = losses.predict(MEMBRANE, kind=kind)
    assert prediction.dtype == torch.int64
    assert prediction.tolist() == [expected]


def test_predict_count_and_accuracy():
    spikes = torch.zeros(4, 4, 3)
    spikes[:3, 0, 2] = 1          # sample 0: class 2 (3 spikes)
    spikes[:2, 1, 0] = 1          # sample 1: class 0 (2 spikes) over class 1 (1 spike)
    spikes[:1, 1, 1] = 1
    spikes[:, 2, 1] = 1           # sample 2: class 1 (4 spikes)
    # sample 3 never fires: ties go to class 0
    assert losses.predict(spikes).tolist() == [2, 0, 1, 0]
    assert losses.accuracy(spikes, torch.tensor([2, 0, 1, 1])) == pytest.approx(0.75)
    assert losses.accuracy(spikes, torch.tensor([2, 0, 1, 0]), kind="count") == 1.0
    assert losses.accuracy(MEMBRANE, torch.tensor([2]), kind="membrane_max") == 1.0
    assert isinstance(losses.accuracy(MEMBRANE, torch.tensor([2]), kind="membrane_last"), float)


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(B, C), (T, B, C, 2)])
def test_wrong_dims_rejected(shape):
    bad = torch.zeros(shape)
    for call in (lambda: losses.spike_count_cross_entropy(bad, TARGET), lambda: losses.predict(bad),
                 lambda: losses.membrane_cross_entropy(bad, TARGET), lambda: losses.spike_rate(bad)):
        with pytest.raises(SpikeforgeError, match=r"is not time-major: expected \[T, B, \.\.\.\] with 3 dimensions"):
            call()


def test_target_out_of_range_names_class_count():
    target = torch.tensor([0, 1, 5, 2])
    with pytest.raises(SpikeforgeError, match=r"class indices 0..5 but the output has 3 classes.*0..2"):
        losses.spike_count_cross_entropy(make_spikes(), target)
    with pytest.raises(SpikeforgeError, match="output has 3 classes"):
        losses.membrane_cross_entropy(make_spikes(), torch.tensor([-1, 0, 1, 2]))


def test_target_shape_and_dtype_rejected():
    with pytest.raises(SpikeforgeError,
                       match=r"target of shape \(3,\) does not match the output batch: expected \[4\]"):
        losses.rate_mse(make_spikes(), torch.tensor([0, 1, 2]))
    with pytest.raises(SpikeforgeError, match=r"int64 class indices.*target.long\(\)"):
        losses.accuracy(make_spikes(), TARGET.int())


def test_unknown_reduction_and_kind_list_options():
    with pytest.raises(SpikeforgeError, match="unknown membrane reduction 'sum'; choose one of mean, max, last"):
        losses.membrane_cross_entropy(make_spikes(), TARGET, reduction="sum")
    with pytest.raises(SpikeforgeError, match="choose one of mean, max, last"):
        MembraneCrossEntropy("median")
    with pytest.raises(SpikeforgeError, match="choose one of count, membrane_mean, membrane_max, membrane_last"):
        losses.predict(make_spikes(), kind="rate")


def test_bad_rates_and_empty_batch_rejected():
    with pytest.raises(SpikeforgeError, match=r"on_rate must be a firing rate in \[0, 1\]"):
        RateMSE(on_rate=1.5)
    with pytest.raises(SpikeforgeError, match="empty batch"):
        losses.accuracy(torch.zeros(3, 0, 2), torch.zeros(0, dtype=torch.long))
