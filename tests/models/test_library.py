"""The models on this computer: downloaded pairs, imported pairs, removal, use without network."""

from __future__ import annotations

import shutil

import pytest

from smolchat.engine import Engine, EngineSettings, Message, ModelFileError
from smolchat.models.download import download
from smolchat.models.library import Library, NotInstalledError
from smolchat.testing.gguf_pair import TINY, write_mmproj
from tests.fake_hub_fixtures import REPO
from tests.helpers import answer


@pytest.fixture
def downloaded(hub, hf_cache) -> Library:
    listing = hub.list_repo(REPO)
    download(hub, REPO, [*listing.text_files, listing.default_projector])
    return Library(hf_cache)


def test_each_downloaded_text_model_pairs_with_the_f16_projector(downloaded):
    models = {m.name: m for m in downloaded.installed()}
    assert sorted(models) == [f"{REPO}:F16", f"{REPO}:Q8_0"]
    assert {m.mmproj.name for m in models.values()} == {"mmproj-SmolVLM-256M-Instruct-f16.gguf"}
    assert models[f"{REPO}:Q8_0"].text_format == "Q8_0"


def test_find_by_repo_picks_the_default_format_or_the_one_asked(downloaded):
    assert downloaded.find(REPO).text_format == "Q8_0"
    assert downloaded.find(REPO, "f16").text_format == "F16"
    assert downloaded.find(f"{REPO}:F16").text_format == "F16"
    with pytest.raises(NotInstalledError, match="smolchat models download .* --quant Q4_K_M"):
        downloaded.find(REPO, "Q4_K_M")


def test_an_installed_model_loads_and_answers_with_the_hub_gone(downloaded, fake_hub, images):
    fake_hub.stop()
    model = downloaded.find(REPO)
    with Engine(model.text, model.mmproj, EngineSettings(n_ctx=2048)) as engine:
        result, _ = answer(engine, [Message.user("What is this?", images=[images["small"]])])
    assert result.stats.image_tiles_encoded > 0 and result.stats.generated_tokens > 0


def test_a_text_model_without_its_projector_is_not_installed(hub, hf_cache):
    listing = hub.list_repo(REPO)
    download(hub, REPO, [listing.default_text])
    assert Library(hf_cache).installed() == []


def test_removing_one_format_keeps_the_other_and_the_projector(downloaded, hf_cache):
    assert downloaded.remove(REPO, "F16") == ["SmolVLM-256M-Instruct-f16.gguf"]
    assert [m.name for m in downloaded.installed()] == [f"{REPO}:Q8_0"]
    downloaded.remove(REPO, "Q8_0")  # the last text model takes its projector along
    assert downloaded.installed() == []
    assert not [p for p in hf_cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_import_of_a_good_pair(tiny_pair, tmp_path):
    text, mmproj = (shutil.copy(p, tmp_path / p.name) for p in tiny_pair)
    library = Library(tmp_path / "empty-cache")

    model = library.import_pair(text, mmproj, name="my tiny model")

    assert [m.name for m in library.installed()] == ["my tiny model"]
    assert library.find("my tiny model") == model
    assert model.imported and model.text == text.resolve()
    library.remove("my tiny model")
    assert library.installed() == [] and text.exists()  # forgotten, not deleted


def test_import_of_a_mismatched_pair_is_refused(tiny_pair, tmp_path):
    other = write_mmproj(tmp_path / "mmproj-other.gguf", TINY.vision, output_width=96)
    library = Library(tmp_path / "empty-cache")

    with pytest.raises(ModelFileError, match="mmproj-other.gguf"):
        library.import_pair(tiny_pair[0], other)
    with pytest.raises(ModelFileError, match="projector"):
        library.import_pair(tiny_pair[1], tiny_pair[1])
    assert library.installed() == []
