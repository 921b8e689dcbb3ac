"""Every count of hardware.energy.counting against an independent brute-force count.

The brute force loops over every input element (spike or nonzero value), every output
position and every kernel offset, in plain Python, and asks whether a nonzero weight
connects them — no convolution, no assumed rates.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from converters.convert import convert
from hardware.energy.counting import OperationCounter, count_operations
from snn import encoders
from snn.errors import SpikeforgeError
from snn.network import Sequential
from snn.neurons import IF, LIF, Integrator


def brute_conv2d(values: torch.Tensor, layer: nn.Conv2d, all_weights: bool = False) -> float:
    """sum over inputs of value x (number of nonzero weights (all if all_weights) that reach an output from it)."""
    n, cin, h, w = values.shape
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    ph, pw = layer.padding
    dh, dw = layer.dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_in, per_group_out = cin // layer.groups, layer.out_channels // layer.groups
    total = 0.0
    for b, c, i, j in itertools.product(range(n), range(cin), range(h), range(w)):
        value = float(values[b, c, i, j])
        if value == 0:
            continue
        group = c // per_group_in
        for o, y, x, a, d in itertools.product(range(group * per_group_out, (group + 1) * per_group_out),
                                               range(oh), range(ow), range(kh), range(kw)):
            if y * sh + a * dh - ph == i and x * sw + d * dw - pw == j \
                    and (all_weights or layer.weight[o, c - group * per_group_in, a, d] != 0):
                total += value
    return total


def brute_conv1d(values: torch.Tensor, layer: nn.Conv1d, all_weights: bool = False) -> float:
    return brute_conv2d(values.unsqueeze(2), _as_conv2d(layer), all_weights)


def _as_conv2d(layer: nn.Conv1d) -> nn.Conv2d:
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, (1, layer.kernel_size[0]), (1, layer.stride[0]),
                     (0, layer.padding[0]), (1, layer.dilation[0]), layer.groups, bias=False)
    conv.weight.data = layer.weight.data.unsqueeze(2)
    return conv


def brute_linear(values: torch.Tensor, layer: nn.Linear) -> float:
    total = 0.0
    for row in values.reshape(-1, layer.in_features):
        for j, value in enumerate(row.tolist()):
            if value != 0:
                total += abs(value) * sum(1 for o in range(layer.out_features) if layer.weight[o, j] != 0)
    return total


def _prune(layer: nn.Module, fraction: float = 0.3, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight[torch.rand(layer.weight.shape, generator=generator) < fraction] = 0
    return layer


class Capture:
    """Record the inputs of the synaptic layers and the outputs of the neuron layers."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.seen: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
        for name, module in modules.items():
            module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(module, args, output):
            value = args[0] if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) else output
            self.seen[name].append((value[0] if isinstance(value, tuple) else value).detach().clone())
        return hook


def _spiking_net() -> Sequential:
    torch.manual_seed(0)
    conv = _prune(nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, bias=False))
    conv2 = _prune(nn.Conv2d(4, 6, 2, stride=1, padding=2, dilation=2, bias=False), seed=1)
    linear = _prune(nn.Linear(6 * 6 * 6, 7), seed=2)
    with torch.no_grad():
        conv.weight.mul_(3.0)
        conv2.weight.mul_(3.0)
    return Sequential(conv, LIF(beta=0.9, theta=0.3), conv2, LIF(beta=0.8, theta=0.3), nn.Flatten(), linear,
                      LIF(theta=0.2), nn.Linear(7, 3), Integrator(), input_shape=(2, 7, 7))


@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_spiking_network_counts_equal_brute_force(encoding):
    model = _spiking_net().eval()
    x = torch.rand(2, 2, 7, 7, generator=torch.Generator().manual_seed(3))
    inputs = encoders.rate(x, 4, generator=torch.Generator().manual_seed(4)) if encoding == "rate" \
        else encoders.direct(x, 4)
    capture = Capture({"0": model[0], "1": model[1], "2": model[2], "3": model[3], "5": model[5], "6": model[6],
                       "7": model[7], "8": model[8]})
    counts, _ = count_operations(model, inputs)
    layers = {layer.name: layer for layer in counts.layers}
    samples = 2
    first = capture.seen["0"][0]
    if encoding == "rate":
        assert layers["0"].input == "spikes"
        assert layers["0"].synaptic_ops == pytest.approx(brute_conv2d(first, model[0]) / samples)
        assert layers["0"].macs == 0
    else:
        assert layers["0"].input == "analog"
        assert layers["0"].macs == pytest.approx(brute_conv2d((first != 0).float(), model[0]) / samples)
        assert layers["0"].synaptic_ops == 0
    dense = brute_conv2d(torch.ones_like(first), model[0], all_weights=True)
    assert layers["0"].dense_macs == pytest.approx(dense / samples)
    assert layers["2"].input == "spikes"
    assert layers["2"].synaptic_ops == pytest.approx(brute_conv2d(capture.seen["2"][0], model[2]) / samples)
    assert layers["5"].synaptic_ops == pytest.approx(brute_linear(capture.seen["5"][0], model[5]) / samples)
    assert layers["7"].synaptic_ops == pytest.approx(brute_linear(capture.seen["7"][0], model[7]) / samples)
    for name in ("1", "3", "6"):
        spikes = capture.seen[name][0]
        per_sample_neurons = spikes[0, 0].numel()
        assert layers[name].neuron_updates == 4 * per_sample_neurons
        brute_spikes = sum(1 for v in spikes.reshape(-1).tolist() if v != 0)
        assert brute_spikes > 0, "the test network must spike in every layer"
        assert layers[name].spikes == pytest.approx(brute_spikes / samples)
        assert layers[name].activation_sparsity == pytest.approx(1 - brute_spikes / spikes.numel())
        assert layers[name].state_reads == layers[name].neuron_updates  # LIF keeps one state word
    assert layers["8"].spikes == 0 and layers["8"].neuron_updates == 4 * 3
    assert layers["2"].weight_reads == layers["2"].synaptic_ops
    assert layers["0"].weight_reads == layers["0"].synaptic_ops + layers["0"].macs
    assert layers["0"].weight_bytes == model[0].weight.numel() * 4


def test_conv1d_counts_equal_brute_force():
    torch.manual_seed(1)
    conv = _prune(nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=False))
    model = Sequential(conv, LIF(theta=0.1), input_shape=(3, 9))
    spikes = (torch.rand(3, 2, 3, 9, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    counts, _ = count_operations(model, spikes)
    assert counts.layers[0].synaptic_ops == pytest.approx(brute_conv1d(spikes.reshape(6, 3, 9), conv) / 2)
    assert counts.layers[0].dense_macs == pytest.approx(brute_conv1d(torch.ones(6, 3, 9), conv, all_weights=True) / 2)


def _small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 2 * 2, 5))


def test_converted_snn_counts_each_spike_through_average_pooling():
    """Per-channel thresholds and average pooling: one AC per spike per synapse of the folded pool+conv."""
    torch.manual_seed(2)
    ann = _small_cnn().eval()
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    snn_model = convert(ann, DataLoader(TensorDataset(images, torch.zeros(32)), batch_size=16), channelwise=True)
    acts = {name: m for name, m in snn_model.named_children() if isinstance(m, IF)}
    convs = {name: m for name, m in snn_model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))}
    capture = Capture({**acts, **convs})
    counts, _ = count_operations(snn_model, encoders.direct(images[:2], 5))
    layers = {layer.name: layer for layer in counts.layers}
    (first_act, second_act), (c1, c2, fc) = list(acts), list(convs)
    assert layers[first_act].spikes > 0 and layers[second_act].spikes > 0
    assert layers[c1].input == "analog" and layers[c2].input == "pooled spikes" and layers[fc].input == "spikes"
    # Brute force for c2: every spike of the first neurons reaches the fan-out of its pooled position.
    spikes = capture.seen[first_act][0].reshape(10, 3, 8, 8)  # 0/1 spikes; Scale(theta) follows the IF layer
    pooled_counts = spikes.reshape(10, 3, 4, 2, 4, 2).sum((3, 5))
    assert layers[c2].synaptic_ops == pytest.approx(brute_conv2d(pooled_counts, convs[c2]) / 2)
    # ... which is the same as looping over the unpooled spikes one by one.
    total = 0.0
    fan = {}
    for b, c, i, j in itertools.product(range(10), range(3), range(8), range(8)):
        if spikes[b, c, i, j]:
            key = (c, i // 2, j // 2)
            if key not in fan:
                one = torch.zeros(1, 3, 4, 4)
                one[0, c, i // 2, j // 2] = 1
                fan[key] = brute_conv2d(one, convs[c2])
            total += fan[key]
    assert layers[c2].synaptic_ops == pytest.approx(total / 2)
    spikes2 = capture.seen[second_act][0].reshape(10, -1)
    assert layers[fc].synaptic_ops == pytest.approx(brute_linear(spikes2, convs[fc]) / 2)
    assert layers[c1].macs == pytest.approx(brute_conv2d((capture.seen[c1][0] != 0).float(), convs[c1]) / 2)
    assert layers[first_act].spikes == pytest.approx(float(spikes.sum()) / 2)
    assert layers[first_act].neuron_updates == 5 * 3 * 8 * 8


def test_dense_ann_counts_dense_and_effective_macs():
    torch.manual_seed(3)
    ann = _small_cnn().eval()
    x = torch.rand(3, 1, 8, 8)
    x[:, :, :2] = 0
    capture = Capture({"0": ann[0], "1": ann[1], "3": ann[3], "4": ann[4], "6": ann[6]})
    counts, _ = count_operations(ann, x, kind="ann")
    layers = {layer.name: layer for layer in counts.layers}
    for name in ("0", "3"):
        seen = capture.seen[name][0]
        dense = brute_conv2d(torch.ones_like(seen), ann[int(name)], all_weights=True)
        assert layers[name].dense_macs == pytest.approx(dense / 3)
        assert layers[name].effective_macs == pytest.approx(brute_conv2d((seen != 0).float(), ann[int(name)]) / 3)
        assert layers[name].macs == layers[name].dense_macs
    assert layers["6"].effective_macs == pytest.approx(brute_linear((capture.seen["6"][0] != 0).float(), ann[6]) / 3)
    relu = capture.seen["1"][0]
    assert layers["1"].activations == relu[0].numel()
    assert layers["1"].activation_sparsity == pytest.approx(float((relu == 0).sum()) / relu.numel())
    zeros = sum(float((capture.seen[n][0] == 0).sum()) for n in ("1", "4"))
    total = sum(capture.seen[n][0].numel() for n in ("1", "4"))
    assert counts.activation_sparsity == pytest.approx(zeros / total)


def test_unknown_layers_are_refused_by_name():
    with pytest.raises(SpikeforgeError, match="does not know layer '1'.*LSTM"):
        OperationCounter(nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3)), "ann")
    with pytest.raises(SpikeforgeError, match="Conv3d"):
        OperationCounter(Sequential(nn.Conv3d(1, 1, 1), LIF()), "snn")
    with pytest.raises(SpikeforgeError, match="recurrent"):
        OperationCounter(Sequential(nn.Linear(3, 3), LIF(recurrent_features=3)), "snn")
    with pytest.raises(SpikeforgeError, match="padding_mode|pads with"):
        OperationCounter(Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), LIF()), "snn")
    with pytest.raises(SpikeforgeError, match="network kind"):
        OperationCounter(nn.Linear(2, 2), "tpu")


def test_nothing_counted_is_an_error_not_zero():
    counter = OperationCounter(Sequential(nn.Linear(3, 3), LIF()), "snn")
    with pytest.raises(SpikeforgeError, match="no inference"):
        counter.counts().per_inference()
