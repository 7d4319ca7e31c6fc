"""The models on this computer: downloaded pairs, imported pairs, removal, use without network."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from smolchat.engine import EngineSettings, Message
from smolchat.engine.engine import Engine
from smolchat.engine.gguf_info import ModelFileError
from smolchat.engine.synthetic import TINY, write_mmproj
from smolchat.models import hf_cache as cache_layout
from smolchat.models.download import download
from smolchat.models.library import Library, NotInstalledError, UnusableFile, model_name
from tests.fake_hub_fixtures import REPO
from tests.helpers import answer

OTHER_REPO = "someone/Other-GGUF"


def test_each_downloaded_text_model_pairs_with_the_f16_projector(downloaded):
    models = {m.name: m for m in downloaded.installed()}
    assert sorted(models) == [f"{REPO}:F16", f"{REPO}:Q8_0"]
    assert {m.mmproj.name for m in models.values()} == {"mmproj-SmolVLM-256M-Instruct-f16.gguf"}
    assert models[f"{REPO}:Q8_0"].text_format == "Q8_0"


def test_a_download_is_named_after_its_repo_and_its_text_files_format():
    assert model_name(REPO, "sub/SmolVLM-256M-Instruct-Q8_0.gguf") == f"{REPO}:Q8_0"


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


def _put_in_cache(cache: Path, repo: str, filename: str, data: bytes) -> Path:
    """A file laid out in the Hugging Face cache as a download leaves it: a blob and its snapshot link."""
    blob = cache_layout.blob_path(cache, repo, hashlib.sha256(data).hexdigest())
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return cache_layout.add_to_snapshot(cache, repo, "2" * 40, filename, blob)


def test_a_damaged_projector_in_the_cache_is_listed_as_unusable_and_the_rest_still_works(
    downloaded, hf_cache, repo_files
):
    projector = repo_files["mmproj-SmolVLM-256M-Instruct-f16.gguf"]
    _put_in_cache(hf_cache, OTHER_REPO, "Other-Q8_0.gguf", repo_files["SmolVLM-256M-Instruct-Q8_0.gguf"])
    bad = _put_in_cache(hf_cache, OTHER_REPO, "mmproj-Other-f16.gguf", projector[: len(projector) // 3])

    inventory = downloaded.inventory()

    assert sorted(m.name for m in inventory.installed) == [f"{REPO}:F16", f"{REPO}:Q8_0"]
    assert downloaded.installed() == inventory.installed
    [unusable] = inventory.unusable
    assert (unusable.model, unusable.path) == (OTHER_REPO, bad)
    assert unusable.reason.startswith("mmproj-Other-f16.gguf: is incomplete")
    assert "download the file again" in unusable.reason


def test_damaged_text_models_in_the_cache_are_listed_as_unusable(downloaded, hf_cache, repo_files):
    good_text = repo_files["SmolVLM-256M-Instruct-Q8_0.gguf"]
    truncated = _put_in_cache(hf_cache, REPO, "SmolVLM-256M-Instruct-Q4_K_M.gguf", good_text[:100])
    wrong_kind = _put_in_cache(
        hf_cache, REPO, "SmolVLM-256M-Instruct-Q6_K.gguf", repo_files["mmproj-SmolVLM-256M-Instruct-f16.gguf"]
    )

    inventory = downloaded.inventory()

    assert sorted(m.name for m in inventory.installed) == [f"{REPO}:F16", f"{REPO}:Q8_0"]
    reasons = {(u.model, u.path): u.reason for u in inventory.unusable}
    assert reasons.keys() == {(f"{REPO}:Q4_K_M", truncated), (f"{REPO}:Q6_K", wrong_kind)}
    assert reasons[f"{REPO}:Q4_K_M", truncated].startswith("SmolVLM-256M-Instruct-Q4_K_M.gguf: is incomplete")
    assert reasons[f"{REPO}:Q6_K", wrong_kind].startswith(
        "SmolVLM-256M-Instruct-Q6_K.gguf: is a vision projector (mmproj), not a text model."
    )
    with pytest.raises(NotInstalledError):
        downloaded.find(REPO, "Q4_K_M")


def test_imported_models_whose_files_went_missing_bad_or_unreadable_are_listed_as_unusable(tiny_pair, tmp_path):
    library = Library(tmp_path / "empty-cache")
    folders = {name: tmp_path / name for name in ("kept", "moved", "damaged", "looped")}
    for name, folder in folders.items():
        folder.mkdir()
        library.import_pair(shutil.copy(tiny_pair[0], folder), shutil.copy(tiny_pair[1], folder), name=name)
    text, mmproj = tiny_pair[0].name, tiny_pair[1].name
    (folders["moved"] / text).unlink()
    (folders["damaged"] / mmproj).write_bytes(b"GGUF")
    looped = folders["looped"] / text  # a link to itself: reading it fails with an OSError (ELOOP)
    looped.unlink()
    looped.symlink_to(looped)

    inventory = library.inventory()

    assert [m.name for m in inventory.installed] == ["kept"]
    by_name = {u.model: u for u in inventory.unusable}
    assert by_name.keys() == {"moved", "damaged", "looped"}
    assert by_name["moved"] == UnusableFile(
        "moved", folders["moved"] / text, f"{text}: does not exist. Check the path."
    )
    assert by_name["damaged"].path == folders["damaged"] / mmproj
    assert by_name["damaged"].reason.startswith(f"{mmproj}: is incomplete")
    assert by_name["looped"] == UnusableFile(
        "looped", looped, f"{text}: cannot be read (Too many levels of symbolic links)."
    )
