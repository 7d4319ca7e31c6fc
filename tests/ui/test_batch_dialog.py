"""Chat → Batch over a folder: the window's model answers every picture of a folder into a
results file, with progress, while the window stays usable; a second run continues."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from tests.batch.test_batch import SCHEMA, pictures, records


def open_from_the_menu(app):
    chat = next(a for a in app.window.menuBar().actions() if a.text() == "&Chat").menu()
    next(a for a in chat.actions() if a.text().startswith("&Batch")).trigger()
    dialog = app.batch.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_a_batch_answers_every_picture_with_progress_then_continues(app, qtbot, tmp_path):
    folder = tmp_path / "photos"
    pictures(folder, 4)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    dialog = open_from_the_menu(app)
    dialog.folder.setText(str(folder))
    dialog.prompt.setPlainText("Write alt text.")
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    assert dialog.toggle.text() == "Stop" and not dialog.folder.isEnabled()
    qtbot.waitUntil(lambda: dialog.toggle.text() == "Start", timeout=60_000)
    assert dialog.status.text().startswith("Done: 4 answered, 1 could not be read"), dialog.status.text()
    assert (dialog.progress.value(), dialog.progress.maximum()) == (5, 5)
    assert dialog.open_results.isEnabled()
    results = folder / "smolchat-results.jsonl"
    lines = records(results)
    assert len(lines) == 5 and sum("error" in r for r in lines) == 1

    pictures(folder, 6)  # two more pictures since
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.toggle.text() == "Start", timeout=60_000)
    assert "2 answered" in dialog.status.text() and "(5 answered before)" in dialog.status.text()
    assert len(records(results)) == 7


def test_a_schema_batch_into_csv_and_what_is_missing_is_said(app, qtbot, tmp_path):
    import csv

    dialog = open_from_the_menu(app)
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    assert dialog.status.text() == "Choose the folder of pictures."
    folder = tmp_path / "receipts"
    pictures(folder, 2)
    dialog.folder.setText(str(folder))
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    assert dialog.status.text() == "Write what to ask of every picture."
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    dialog.prompt.setPlainText("Caption it and count the people.")
    dialog.schema.setText(str(tmp_path / "schema.json"))
    dialog.results.setText(str(tmp_path / "out.csv"))
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.toggle.text() == "Start", timeout=60_000)
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert len(rows) == 2 and all(row["people"].lstrip("-").isdigit() for row in rows), dialog.status.text()


def test_loading_another_model_stops_the_batch(app, qtbot, tmp_path, tiny_model):
    folder = tmp_path / "many"
    pictures(folder, 30)
    dialog = open_from_the_menu(app)
    dialog.folder.setText(str(folder))
    dialog.prompt.setPlainText("Describe it in detail.")
    qtbot.mouseClick(dialog.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.progress.value() >= 1, timeout=60_000)
    with qtbot.waitSignal(app.turns.model_ready, timeout=60_000):
        app.turns.load_model(tiny_model)
    qtbot.waitUntil(lambda: dialog.toggle.text() == "Start", timeout=60_000)
    assert "Another model is loading" in dialog.status.text()
    assert 1 <= len(records(folder / "smolchat-results.jsonl")) < 30
