"""Suite-wide isolation: caches go to a temporary folder, never the user's home or the repo."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CODECSEP_CACHE", str(tmp_path_factory.mktemp("codecsep-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    yield
    mp.undo()
