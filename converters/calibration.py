"""Data-based normalisation: the firing threshold of each converted activation.

The threshold of an activation is the ``percentile``-th percentile of its ANN outputs over
the calibration data (Rueckauer et al. 2017), layer-wise (one value) or channel-wise (one
per channel, dimension 1). A percentile below 100 ignores rare outliers, so the spiking
neurons use their rate range well at few timesteps. An activation with a ceiling (ReLU6,
clamp) never gets a threshold above it; a QCFS activation uses its learned clip lambda.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.data import DataLoader

from converters.tracing import POOLS, WEIGHTED, ActivationSite, activation_sites
from snn.errors import SpikeforgeError

# Values kept per activation site and calibration batch (a uniform sample with replacement beyond this):
# memory stays bounded on large models. On the scale check's ResNet-18 (two batches of 64 CIFAR-shaped
# images) the sampled 99.9th percentiles are within 1.3% of the exact ones (0.5% on average).
MAX_VALUES_PER_BATCH = 1 << 18


def _inputs(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _sample_columns(values: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """About ``limit`` columns of ``values [R, N]`` drawn uniformly with replacement, in runs of ``L``
    adjacent columns (``L`` divides ``N``; up to 1,024): every column is equally likely to be drawn, so the
    percentile of the sample estimates the percentile of all values without bias, and copying whole
    runs costs a fraction of a gather of single elements."""
    rows, n = values.shape
    run = math.gcd(n, 1024)
    picks = torch.randint(n // run, (max(1, limit // run),), generator=generator)
    return values.reshape(rows, n // run, run)[:, picks].reshape(rows, -1)


# Nodes whose output is a fresh tensor (not a view of another one): an activation that is their only reader
# may clamp it in place during calibration, saving one activation-sized allocation per layer.
_FRESH_MODULES = (*WEIGHTED, *POOLS)
_FRESH_FUNCTIONS = {operator.add, torch.add, torch.cat, torch.concat}


def _sites_that_may_overwrite(gm: fx.GraphModule, sites: dict[str, ActivationSite]) -> list[ActivationSite]:
    """The sites whose input is a fresh tensor that no other node reads (so clamping it in place is safe)."""
    safe = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in sites or sites[node.target].qcfs is not None:
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or len(source.users) != 1:
            continue
        fresh = (source.op == "call_module" and isinstance(gm.get_submodule(source.target), _FRESH_MODULES)) \
            or (source.op == "call_function" and source.target in _FRESH_FUNCTIONS)
        if fresh:
            safe.append(sites[node.target])
    return safe


def rows_percentile(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """The ``percentile``-th percentile of each row of ``values [R, N]``, linearly interpolated between
    the two nearest ranks as numpy's default method does: at position ``p = q (N - 1)`` (0-based, in
    ascending order) ``v[floor p] + (v[floor p + 1] - v[floor p]) * frac(p)``. Only the ``N - floor p``
    largest values of a row decide it, so a top-k finds them, far cheaper than sorting or partitioning
    the whole row when the percentile is high."""
    n = values.shape[1]
    position = percentile / 100 * (n - 1)
    low = math.floor(position)
    k = n - low  # ranks low .. n-1: the k largest
    if 2 * k <= n:
        top = values.topk(k, dim=1).values  # descending: top[:, k - 1] is v[low], top[:, k - 2] is v[low + 1]
        below, above = top[:, k - 1], top[:, max(k - 2, 0)]
    else:
        below = values.kthvalue(low + 1, dim=1).values
        above = values.kthvalue(min(low + 2, n), dim=1).values
    below, above = below.double(), above.double()
    return (below + (above - below) * (position - low)).float()


@torch.no_grad()
def activation_thresholds(gm: fx.GraphModule, loader: DataLoader, percentile: float = 99.9,
                          channelwise: bool = False, max_batches: int | None = None,
                          device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Threshold per :class:`ActivationSite` of ``gm``, by name.

    The first batch runs through :class:`torch.fx.passes.shape_prop.ShapeProp`, so afterwards every node of
    ``gm`` carries its output's shape (``node.meta["tensor_meta"]``, batch dimension first), which
    :func:`converters.assemble.spiking_network` reads instead of running the network again.
    """
    if not 0 < percentile <= 100:
        raise SpikeforgeError(f"percentile must lie in (0, 100], got {percentile}")
    sites = activation_sites(gm)
    if not sites:
        raise SpikeforgeError("the model has no ReLU-like activation to convert into spiking neurons")
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    generator = torch.Generator().manual_seed(0)

    def recorder(name: str):
        def hook(module: ActivationSite, inputs, output: torch.Tensor) -> None:
            values = output.detach().float().cpu()
            values = values.transpose(0, 1).reshape(values.shape[1], -1) if channelwise else values.reshape(1, -1)
            limit = MAX_VALUES_PER_BATCH // values.shape[0]
            if values.shape[1] > limit:
                values = _sample_columns(values, limit, generator)
            collected[name].append(values.clone() if values.data_ptr() == output.data_ptr() else values)
        return hook

    handles = [site.register_forward_hook(recorder(name)) for name, site in sites.items()
               if site.qcfs is None]
    overwriting = _sites_that_may_overwrite(gm, sites)
    gm.eval().to(device)
    try:
        for site in overwriting:
            site.overwrite_input = True
        batches = 0
        for batch in loader:
            x = _inputs(batch).to(device)
            if batches == 0:  # the same forward, leaving each node's output shape on it for the assembly
                ShapeProp(gm).propagate(x)
            else:
                gm(x)
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
    finally:
        for handle in handles:
            handle.remove()
        for site in overwriting:
            site.overwrite_input = False
    if batches == 0:
        raise SpikeforgeError("calibration loader is empty; give it a few batches of training data")

    thresholds = {}
    for name, site in sites.items():
        if site.qcfs is not None:
            thresholds[name] = site.qcfs.lam.detach().abs().float().cpu().reshape(())
            continue
        scale = rows_percentile(torch.cat(collected[name], dim=1), percentile)
        if site.upper is not None:
            scale = scale.clamp(max=site.upper)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # a silent unit: any threshold works
        thresholds[name] = scale if channelwise else scale.reshape(())
    return thresholds
