"""The model picker against the fake Hub: formats with their fit, a download, then the model in use."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton

from tests.fake_hub_fixtures import REPO


def test_first_run_downloads_the_default_model_and_uses_it(qtbot, first_run):
    app = first_run
    app.window.show()
    with qtbot.waitSignal(app.models.default_shown, timeout=30_000):
        app.start()  # nothing installed: the welcome screen, with the recommended model
    welcome = app.window.first_run
    assert app.window.pages.currentWidget() is welcome
    assert "never sent anywhere" in welcome.findChild(QLabel, "privacy").text()  # nothing leaves the computer
    facts = welcome.model_facts.text()
    assert " download · about " in facts and "of memory" in facts and "on this computer" in facts, facts
    assert welcome.download_button.isEnabled()

    shown = []
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        qtbot.mouseClick(welcome.download_button, Qt.MouseButton.LeftButton)  # the picker opens, downloading
    picker = app.models.picker
    picker.progress.valueChanged.connect(shown.append)
    assert picker.isVisible() and app.models.listing.repo == REPO
    texts = [picker.files.item(r, 0).text() for r in range(picker.files.rowCount())]
    assert texts == ["★ SmolVLM-256M-Instruct-Q8_0.gguf", "SmolVLM-256M-Instruct-f16.gguf"]
    assert picker.files.item(0, 4).text() in ("fits", "tight", "does not fit")
    assert picker.selected_text_file() == "SmolVLM-256M-Instruct-Q8_0.gguf"
    assert picker.projector.currentData() == "mmproj-SmolVLM-256M-Instruct-f16.gguf"

    assert app.models.download is not None  # started by the welcome screen's one click
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        pass
    assert shown and shown[-1] == 1000 and shown == sorted(shown)  # the bar filled as the bytes came
    assert app.window.pages.currentWidget() is not welcome  # the conversation, now that a model is here
    assert "Installed" in picker.notice.text()
    assert [picker.installed.item(i).data(Qt.ItemDataRole.UserRole) for i in range(picker.installed.count())] == [
        f"{REPO}:Q8_0"
    ]
    assert app.turns.model.name == f"{REPO}:Q8_0" and app.turns.model_info is not None
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        app.models.show_repo(REPO)
    assert picker.files.item(0, 4).text().startswith("✓ downloaded")  # the row says what is here
    assert not picker.files.item(1, 4).text().startswith("✓")


def test_without_the_hub_the_picker_offers_import(qtbot, first_run, fake_hub, tiny_pair):
    fake_hub.stop()
    app = first_run
    with qtbot.waitSignal(app.models.default_shown, timeout=30_000):
        app.start()
    assert "Cannot reach the Hugging Face Hub" in app.window.first_run.model_facts.text()
    assert not app.window.first_run.download_button.isEnabled()
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        picker = app.models.open()
    assert "Cannot reach the Hugging Face Hub" in picker.notice.text()
    assert "import model files from disk" in picker.notice.text()
    assert not picker.download_button.isEnabled()
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.models.import_pair(str(tiny_pair[0]), str(tiny_pair[1]))
    assert picker.installed.count() == 1


def test_a_damaged_projector_is_shown_as_unusable_and_not_offered(qtbot, first_run, hf_cache, repo_files):
    projector = repo_files["mmproj-SmolVLM-256M-Instruct-f16.gguf"]
    snapshot = hf_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "SmolVLM-256M-Instruct-Q8_0.gguf").write_bytes(repo_files["SmolVLM-256M-Instruct-Q8_0.gguf"])
    (snapshot / "mmproj-SmolVLM-256M-Instruct-f16.gguf").write_bytes(projector[:1000])
    app = first_run
    with qtbot.waitSignal(app.models.default_shown, timeout=30_000):
        app.start()  # the app starts; with nothing usable installed, the welcome screen
    assert app.window.pages.currentWidget() is app.window.first_run
    with qtbot.waitSignal(app.models.listing_shown, timeout=30_000):
        picker = app.models.open()

    [item] = [picker.installed.item(i) for i in range(picker.installed.count())]
    assert item.text().startswith(f"✕ {REPO} — cannot be used: mmproj-SmolVLM-256M-Instruct-f16.gguf: is incomplete")
    assert str(snapshot / "mmproj-SmolVLM-256M-Instruct-f16.gguf") in item.toolTip()
    qtbot.mouseClick(
        picker.installed.viewport(), Qt.MouseButton.LeftButton, pos=picker.installed.visualItemRect(item).center()
    )
    assert not item.isSelected()
    use = next(b for b in picker.findChildren(QPushButton) if b.accessibleName() == "Use this model")
    qtbot.mouseClick(use, Qt.MouseButton.LeftButton)
    assert app.turns.model is None
