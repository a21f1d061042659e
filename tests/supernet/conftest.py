"""Fixtures shared by the supernet tests that need a (tiny) trained checkpoint."""
from __future__ import annotations

import pytest

from nas.space import load_space
from nas.supernet import load_supernet

from subnet_helpers import tiny_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(space file, checkpoint) of a tiny supernet trained a few steps, once per test module."""
    return tiny_checkpoint(tmp_path_factory.mktemp("supernet"))


@pytest.fixture(scope="module")
def supernet(files):
    space_file, checkpoint = files
    return load_supernet(checkpoint, load_space(space_file))[0]
