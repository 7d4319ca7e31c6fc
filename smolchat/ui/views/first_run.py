"""The first screen, while no model is on this computer: what SmolChat does, that nothing leaves
the computer, and the default model to get (its download size and memory) or files to import."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from smolchat.ui import theme


class FirstRun(QWidget):
    download_requested = Signal()
    choose_requested = Signal()
    import_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("firstRun")
        title = QLabel("<h1>Welcome to SmolChat</h1>")
        title.setAccessibleName("Welcome to SmolChat")
        what = QLabel(
            "Ask a small vision-language model about a photo, a screenshot, a clip or a PDF. "
            "Drop it in the window, type your question, and the answer is written as you watch."
        )
        private = QLabel(
            "<b>Everything stays on this computer.</b> The model runs here, through llama.cpp; "
            "your pictures, questions and answers are never sent anywhere. The only thing SmolChat "
            "fetches is the model itself, once, from the Hugging Face Hub."
        )
        private.setObjectName("privacy")
        for label in (what, private):
            label.setWordWrap(True)
        card = QFrame()
        card.setObjectName("answerBubble")
        self.model_name = QLabel("<b>SmolVLM 256M Instruct</b>")
        self.model_facts = QLabel("Looking up its size on the Hugging Face Hub…")
        self.model_facts.setWordWrap(True)
        self.download_button = QPushButton("Download and start")
        self.download_button.setAccessibleName("Download the recommended model")
        self.download_button.setToolTip("Download SmolVLM 256M Instruct (text model and vision projector) and load it")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.download_requested)
        self.import_button = QPushButton("Import GGUF files…")
        self.import_button.setAccessibleName("Import model files")
        self.import_button.setToolTip("Use a SmolVLM text GGUF and its mmproj that you already have")
        self.import_button.clicked.connect(self.import_requested)
        self.choose_button = QPushButton("Other models…")
        self.choose_button.setAccessibleName("Choose another model")
        self.choose_button.setToolTip("See every SmolVLM model and format, with what fits this computer")
        self.choose_button.clicked.connect(self.choose_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.choose_button)
        buttons.addStretch(1)
        inside = QVBoxLayout(card)
        inside.setContentsMargins(16, 12, 16, 12)
        inside.addWidget(QLabel("Recommended to start"))
        inside.addWidget(self.model_name)
        inside.addWidget(self.model_facts)
        inside.addLayout(buttons)
        column = QVBoxLayout()
        column.addStretch(1)
        for widget in (title, what, private, card):
            column.addWidget(widget)
        column.addStretch(2)
        row = QHBoxLayout(self)
        row.addStretch(1)
        row.addLayout(column, 6)
        row.addStretch(1)

    def show_default(self, name: str, size: str, memory: str, fit: str, message: str) -> None:
        """The recommended model as the Hub lists it: its download, its memory and whether it fits."""
        name, size, memory, fit_text, message_text = map(html.escape, (name, size, memory, fit, message))
        self.model_name.setText(f"<b>{name}</b>")  # rich text from a Hub's listing: every piece escaped
        colour = theme.current().fit(fit)
        self.model_facts.setText(
            f"A {size} download · about {memory} of memory while it runs · "
            f'<span style="color:{colour}">{fit_text}</span> on this computer. {message_text}'
        )
        self.model_facts.setToolTip(message)
        self.download_button.setEnabled(True)

    def show_unreachable(self, message: str) -> None:
        self.model_facts.setText(f"{message} You can import model files you already have.")
        self.download_button.setEnabled(False)
        self.import_button.setFocus(Qt.FocusReason.OtherFocusReason)
