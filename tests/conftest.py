"""Suite-wide settings. One intra-op thread: the suite runs next to Ray workers on 2 cores,
and oversubscribed torch/BLAS threads slow down by an order of magnitude."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import torch

torch.set_num_threads(1)

# RELIABILITY.md: the `reliability` fixture and the report written at the end of a full run.
pytest_plugins = ("tests.reliability_report",)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray per test module that asks for it (bulk-scan and fault tests). Ray is
    imported here, not at the top: the engine and net tests also run on a lent GPU machine,
    which has torch but no Ray (`bash scripts/gpu.sh tests`)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
