"""What several test files share: the ``gpu`` marker, applied once, the ``slow`` order, and small real files.

A test marked ``@pytest.mark.gpu`` runs where CUDA is available and is skipped elsewhere
(here, not beside every marker). Tests marked ``slow`` (a minute or more of one core) are
collected first, so pytest-xdist starts them while the other workers run the short ones
instead of leaving one worker alone with them at the end. Each xdist worker runs torch on
one thread (see below). The session fixtures build each small artifact once per
test process (once per xdist worker) instead of once per test file.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One xdist worker per core: a worker (and the snn commands it starts) on one torch thread.
    # torch's default, a thread per core in every worker, oversubscribes the cores: OpenMP
    # threads spin while they wait for one.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: "slow" not in item.keywords)  # stable: the slow ones first, in file order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu); run `pytest -m gpu` where one exists")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
