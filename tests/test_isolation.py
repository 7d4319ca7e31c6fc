"""The test run reads and writes nothing of the user's: SmolChat's folders and Hugging Face's
(its cache, token and remembered state) are the run's own."""

from __future__ import annotations

import os
from pathlib import Path

from smolchat import paths


def test_every_folder_the_tests_use_is_the_test_runs_own():
    from huggingface_hub import constants, get_token

    home = Path(os.environ["SMOLCHAT_HOME"])
    assert Path(constants.HF_HOME).is_relative_to(home)
    assert Path(constants.HF_HUB_CACHE).is_relative_to(constants.HF_HOME)
    assert get_token() is None
    for name, folder in paths.locations().items():
        assert folder.is_relative_to(home), name
