"""What several test files share: the ``gpu`` marker, applied once, and small real files.

A test marked ``@pytest.mark.gpu`` runs where CUDA is available and is skipped elsewhere
(here, not beside every marker). The session fixtures build each small artifact once per
test process (once per xdist worker) instead of once per test file.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu); run `pytest -m gpu` where one exists")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
