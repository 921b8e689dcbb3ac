"""One checked loader for network files, and kernels that cannot be fooled (issue 21, items 1 and 6).

Each tampered checkpoint is made from a real one (``save_checkpoint`` of a small network) by
editing the dictionary ``torch.load(weights_only=True)`` gives and saving it again; ``snn
evaluate`` must refuse it with exactly one ``snn: error: ...`` line naming the cause, no
traceback and no signal. The CLI runs are started together in a module fixture (each costs
the CLI's start-up, seconds), then every test checks its own.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import nir
import numpy as np
import pytest
import torch
import torch.serialization
from torch import nn

import snn
from snn.checkpoint import load_checkpoint, save_checkpoint
from snn.errors import SpikeforgeError
from snn.event_driven import EventDrivenNetwork
from snn.kernels.event_linear import event_currents, event_linear

TASK = {"timesteps": 4, "encoder": "direct", "readout": "membrane_mean"}


def base_model() -> snn.Sequential:
    """0 Conv2d, 1 BatchNorm2d, 2 LIF, 3 AvgPool2d, 4 Flatten, 5 Linear 64->64, 6 LIF, 7 Linear 64->10, 8 Integrator."""
    torch.manual_seed(0)
    return snn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), snn.LIF(), nn.AvgPool2d(2),
                          nn.Flatten(), nn.Linear(64, 64), snn.LIF(), nn.Linear(64, 10), snn.Integrator(),
                          input_shape=(1, 8, 8)).eval()


def mismatched_model(in_features: int) -> snn.Sequential:
    """Layer 3 reads ``in_features`` from a layer giving 128 (the event-driven Linear's out-of-bounds case)."""
    torch.manual_seed(0)
    return snn.Sequential(nn.Flatten(), nn.Linear(64, 128), snn.LIF(), nn.Linear(in_features, 64), snn.LIF(),
                          nn.Linear(64, 10), snn.Integrator(), input_shape=(1, 8, 8)).eval()


def _layers(p: dict) -> list[dict]:
    return p["network"]["layers"]


def _set(p: dict, index: int, field: str, value: Any) -> None:
    _layers(p)[index][field] = value


def _rechain(p: dict) -> None:
    """Layer 7 reads 50 features (and its weight says so) while layer 5 gives 64."""
    _set(p, 7, "in_features", 50)
    p["state_dict"]["7.weight"] = torch.zeros(10, 50)


def _three_channels(p: dict) -> None:
    _set(p, 0, "in_channels", 3)
    p["state_dict"]["0.weight"] = torch.zeros(4, 3, 3, 3)


def _meta_tensor(p: dict) -> None:
    p["state_dict"]["5.bias"] = torch.empty(64, device="meta")


def _say_cuda(p: dict) -> None:
    p["meta"]["device"] = "cuda"


# case -> (how to tamper with the payload, words the one error line must hold)
TAMPERED: dict[str, tuple[Callable[[dict], None], tuple[str, ...]]] = {
    "unknown_task_key": (lambda p: p["task"].__setitem__("bogus", 1), ("task", "'bogus'", "timesteps")),
    "no_network": (lambda p: p.pop("network"), ("'network'",)),
    "state_dict_list": (lambda p: p.__setitem__("state_dict", list(p["state_dict"].values())),
                        ("state_dict", "list", "dictionary")),
    "input_shape_text": (lambda p: p["network"].__setitem__("input_shape", "1,8,8"),
                         ("input_shape", "'1,8,8'", "positive integers")),
    "kernel_size_text": (lambda p: _set(p, 0, "kernel_size", "3"), ("layer 0 (Conv2d)", "'kernel_size'", "'3'")),
    "negative_out_features": (lambda p: _set(p, 7, "out_features", -10),
                              ("layer 7 (Linear)", "'out_features'", "-10", "positive integer")),
    "sizes_do_not_chain": (_rechain, ("layer 7 (Linear)", "in_features is 50", "64 features")),
    "conv_wants_three_channels": (_three_channels, ("layer 0 (Conv2d)", "in_channels is 3", "1 channels")),
    "meta_tensor": (_meta_tensor, ("'5.bias'", "meta device")),
    "huge_layer": (lambda p: _set(p, 7, "out_features", 10 ** 12),
                   ("layer 7 (Linear 64 -> 1000000000000)", "GiB of weights", "memory")),
}
KERNEL_CASES = {"narrow_linear": 100, "wide_linear": 200}  # layer 3 reads this many of layer 1's 128 features


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snn", *args], capture_output=True, text=True, timeout=120)


def _save_cuda_tagged(payload: dict, path: Path) -> None:
    """Save with every storage tagged as CUDA, as a checkpoint written on a GPU machine is."""
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(payload, path)
    finally:
        torch.serialization.location_tag = original


def _nir_misshaped(path: Path) -> Path:
    """A NIR file whose Input gives 10 features to an Affine that reads 8 (its type check is off)."""
    weight = np.ones((64, 8), np.float32)
    nodes = {"input": nir.Input(np.array([10])), "fc": nir.Affine(weight, np.zeros(64, np.float32)),
             "lif": nir.IF(r=np.ones(64), v_threshold=np.ones(64)), "output": nir.Output(np.array([64]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    nir.write(path, graph)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every CLI case run once (two at a time): case name -> finished process."""
    folder = tmp_path_factory.mktemp("checked_loader")
    base = torch.load(save_checkpoint(folder / "base.pt", base_model(), TASK, {"note": "x"}), weights_only=True)
    commands: dict[str, list[str]] = {}
    for name, (tamper, _) in TAMPERED.items():
        payload = copy.deepcopy(base)
        tamper(payload)
        torch.save(payload, folder / f"{name}.pt")
        commands[name] = ["evaluate", "--model", str(folder / f"{name}.pt")]
    for name, width in KERNEL_CASES.items():
        save_checkpoint(folder / f"{name}.pt", mismatched_model(width), TASK)
        commands[name] = ["evaluate", "--model", str(folder / f"{name}.pt")]
    cuda = copy.deepcopy(base)
    _say_cuda(cuda)
    _save_cuda_tagged(cuda, folder / "cuda.pt")
    commands["cuda"] = ["evaluate", "--model", str(folder / "cuda.pt")]
    commands["nir_misshaped"] = ["nir", "import", "--nir", str(_nir_misshaped(folder / "bad.nir")),
                                 "--out", str(folder / "nir.pt")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(commands, pool.map(lambda args: _cli(*args), commands.values())))
    return done


def _one_error_line(run: subprocess.CompletedProcess, *words: str) -> str:
    assert run.returncode > 0, (run.returncode, run.stderr)  # refused, and not killed by a signal
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("snn: error: "), run.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_checkpoint_is_refused_in_one_line(runs, case: str) -> None:
    line = _one_error_line(runs[case], *TAMPERED[case][1])
    assert f"{case}.pt" in line


@pytest.mark.parametrize("case", list(KERNEL_CASES))
def test_linear_narrower_or_wider_than_its_input_is_refused_not_a_segfault(runs, case: str) -> None:
    _one_error_line(runs[case], "layer 3 (Linear)", f"in_features is {KERNEL_CASES[case]}", "128 features")


def test_checkpoint_saved_on_cuda_loads_on_the_cpu(runs) -> None:
    run = runs["cuda"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "test_accuracy" in run.stdout


def test_nir_import_of_a_misshaped_first_layer_is_refused(runs) -> None:
    _one_error_line(runs["nir_misshaped"], "'fc' (Linear)", "takes 8 inputs", "gives 10 features")


def test_good_checkpoint_loads_and_keeps_its_mode(tmp_path) -> None:
    model = base_model().train()
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, TASK)).model
    assert loaded.training
    x = torch.rand(3, 2, 1, 8, 8)
    assert torch.equal(loaded.eval()(x), model.eval()(x))


@pytest.mark.parametrize("width", [32, 100])
def test_event_linear_refuses_a_width_other_than_in_features(width: int) -> None:
    weight, bias = torch.randn(128, 64), torch.zeros(128)
    x = torch.zeros(4, width)
    x[:, 0] = 1.0  # sparse: the event-driven path would be taken
    with pytest.raises(SpikeforgeError, match=f"in_features=64.*{width} features"):
        event_linear(x, weight, bias)
    with pytest.raises(SpikeforgeError, match="in_features=64"):
        event_currents(x.numpy(), np.ascontiguousarray(weight.t().numpy()), bias.numpy())
    with pytest.raises(SpikeforgeError, match="float32 / float64"):
        event_currents(torch.zeros(4, 64, dtype=torch.float64).numpy(), np.ascontiguousarray(weight.t().numpy()),
                       bias.numpy())


@pytest.mark.parametrize("width", [100, 200])
def test_event_driven_network_refuses_sizes_that_do_not_chain(width: int) -> None:
    with pytest.raises(SpikeforgeError, match=f"layer 3 \\(Linear\\) has in_features {width}"):
        EventDrivenNetwork.from_sequential(mismatched_model(width))
    net = EventDrivenNetwork.from_sequential(mismatched_model(128))
    with pytest.raises(SpikeforgeError, match="frames have 10 features"):
        net.run(torch.zeros(3, 10))


def _nan_weight(p: dict) -> None:
    p["state_dict"]["5.weight"] = torch.full((64, 64), float("nan"))


# further tampering, checked in-process (no CLI start-up; the cases above show the CLI prints such an
# error as its one line): case -> (tamper, pattern of the error)
MORE_TAMPERED: dict[str, tuple[Callable[[dict], None], str]] = {
    "bool_in_features": (lambda p: _set(p, 5, "in_features", True), r"layer 5 \(Linear\) field 'in_features'"),
    "nan_weight": (_nan_weight, r"'5.weight'.*NaN"),
    "wrong_weight_shape": (lambda p: p["state_dict"].__setitem__("7.bias", torch.zeros(11)), r"'7.bias'.*\(11,\)"),
    "missing_weight": (lambda p: p["state_dict"].pop("5.weight"), r"no tensor '5.weight'"),
    "extra_top_level_key": (lambda p: p.__setitem__("code", "os.system"), r"unknown key 'code'"),
    "short_kernel_size": (lambda p: _set(p, 0, "kernel_size", [3]), r"layer 0 \(Conv2d\).*expected 2 each"),
    "flatten_the_batch": (lambda p: _set(p, 4, "start_dim", 0), r"layer 4 \(Flatten\).*start_dim 0"),
    "unknown_field": (lambda p: _set(p, 5, "module", "os"), r"layer 5 \(Linear\): has unknown field 'module'"),
    "text_timesteps": (lambda p: p["task"].__setitem__("timesteps", "4"), r"task field 'timesteps'"),
    # refused before this loader too; kept
    "nan_beta": (lambda p: _set(p, 2, "beta", float("nan")), r"layer 2 \(LIF\) field 'beta': is nan.*finite"),
    "nan_theta": (lambda p: _set(p, 2, "theta", float("nan")), r"layer 2 \(LIF\) field 'theta': is nan.*finite"),
    "unknown_layer_type": (lambda p: _set(p, 4, "type", "GELU"), r"layer 4: has unknown layer type 'GELU'"),
    "old_converted_format": (lambda p: (p.clear(), p.update({"format": "spikeforge.converted", "ann": "os:system"})),
                             r"bad.pt is a converted SNN of spikeforge's first format .* os:system"),
}


@pytest.mark.parametrize("case", list(MORE_TAMPERED))
def test_more_tampering_is_one_clear_error(tmp_path, case: str) -> None:
    payload = torch.load(save_checkpoint(tmp_path / "base.pt", base_model(), TASK), weights_only=True)
    tamper, words = MORE_TAMPERED[case]
    tamper(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(SpikeforgeError, match=words) as caught:
        load_checkpoint(tmp_path / "bad.pt")
    assert "\n" not in str(caught.value) and "bad.pt" in str(caught.value)
