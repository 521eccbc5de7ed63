"""The digit grids of the lab's figures keep torchvision's ``make_grid`` layout, pixel for pixel,
without importing torchvision in every process that plots."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from vae_core.outputs.lab_figures import _grid


@pytest.mark.parametrize("count", [1, 2, 7, 16, 17, 64])
@pytest.mark.parametrize("nrow", [1, 8, 16])
def test_grid_equals_make_grid(count, nrow):
    images = torch.rand(count, 784, generator=torch.Generator().manual_seed(count * nrow))
    want = make_grid(images.reshape(-1, 1, 28, 28), nrow=nrow, padding=2, pad_value=1.0)[0]
    got = _grid(images, nrow)
    assert got.dtype == np.float32 and np.array_equal(got, want.numpy())


def test_plotting_does_not_import_torchvision():
    code = ("import sys, torch; from vae_core.outputs import lab_figures; "
            "lab_figures.reconstruction_figure(torch.rand(4, 784), torch.rand(4, 784)); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
