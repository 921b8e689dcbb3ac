"""A 2-process CPU DDP run (gloo) against a single process with the same global batch.

Both train the digits MLP for one epoch (26 steps of global batch 64, T=4). Each worker
takes half of every global batch and DDP averages the gradients, so the parameters agree
up to float32 summation order: tolerance atol = 1e-5 (measured difference ~6e-7).
"""

from __future__ import annotations

import pytest
import torch

from snn.app.distributed import ShardedLoader
from snn.app.jobs import TrainSettings, train_classifier
from snn.checkpoint import load_checkpoint


def test_sharded_loader_splits_each_global_batch() -> None:
    batches = [(torch.arange(8), torch.arange(8) * 10), (torch.arange(3), torch.arange(3))]
    rank0, rank1 = list(ShardedLoader(batches, 0, 2)), list(ShardedLoader(batches, 1, 2))
    assert torch.equal(torch.cat([rank0[0][0], rank1[0][0]]), torch.arange(8))
    assert torch.equal(rank1[0][1], torch.arange(4, 8) * 10)
    assert len(ShardedLoader(batches, 0, 2)) == 2


@pytest.mark.slow
def test_two_process_ddp_equals_single_process(tmp_path) -> None:
    common = dict(arch="mlp", epochs=1, batch_size=64, timesteps=4, progress=False, device="cpu")
    single = train_classifier(TrainSettings(**common), tmp_path / "one")
    double = train_classifier(TrainSettings(**common, nproc=2), tmp_path / "two")
    assert (tmp_path / "two" / "train.json").exists() and double["epochs"] == 1
    a = load_checkpoint(tmp_path / "one" / "model.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "two" / "model.pt").model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=f"parameter {key} differs")
    assert single["test_accuracy"] > 0.3 and abs(single["test_accuracy"] - double["test_accuracy"]) < 0.02


def test_cli_train_takes_nproc() -> None:
    from snn.app.cli import build_parser
    args = build_parser().parse_args(["train", "--out", "x", "--nproc", "2"])
    assert args.nproc == 2


def test_torchrun_sets_the_group_size(monkeypatch) -> None:
    """Under torchrun the job runs data-parallel without --nproc (torchrun's parser takes it for its own)."""
    from snn.app.distributed import group_size
    for name in ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert group_size(3) == 3
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "run")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert group_size(1) == 2
