"""The chat: what happens when the user sends, stops, regenerates, edits, attaches images,
switches conversation or model. Views report intent here; work goes to the engine's thread;
results come back as signals and go to the views and the store."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QFileDialog

from smolchat import settings as settings_module
from smolchat.budget.context import (
    ContextBudget,
    PredictedCounter,
    messages_to_send,
    plan_context,
)
from smolchat.budget.detail import Detail, max_tokens_for
from smolchat.budget.fit import largest_context, memory_settings, suggest_gpu_layers
from smolchat.budget.images import ImageCost, ImageMarkers, image_cost, prepared_size
from smolchat.engine import Engine, ImageError, Message, TurnResult
from smolchat.errors import SmolChatError
from smolchat.models.library import InstalledModel
from smolchat.models.machine import machine_memory
from smolchat.store import COMPLETE, STOPPED, STREAMING, Store, StoredMessage
from smolchat.store.export import to_json, to_markdown
from smolchat.ui.views.chat_view import MessageBubble
from smolchat.ui.views.main_window import MainWindow
from smolchat.ui.views.settings_dialog import SettingsDialog
from smolchat.ui.workers.engine_worker import (
    EngineWorker,
    LoadRequest,
    PrefillRequest,
    TurnRequest,
)

NEW_TITLE = "New chat"
SAVE_EVERY_MS = 1000  # a growing answer reaches the disk at least this often
METER_DELAY_MS = 150  # typing pauses this long before the meter is counted again
NEAR_LIMIT = 0.85


@dataclass
class _Turn:
    conversation_id: int
    message_id: int
    bubble: MessageBubble
    cancel: threading.Event = field(default_factory=threading.Event)
    text: str = ""


class ChatController(QObject):
    answered = Signal()  # an answer ended (finished, stopped or failed) and is shown and saved
    model_ready = Signal()  # a model finished loading and the window shows it

    def __init__(self, window: MainWindow, store: Store, worker: EngineWorker,
                 settings: settings_module.Settings) -> None:
        super().__init__(window)
        self.window, self.store, self.worker, self.settings = window, store, worker, settings
        self.conversation_id: int | None = None
        self.model: InstalledModel | None = None
        self.engine: Engine | None = None
        self.counter: PredictedCounter | None = None
        self.turn: _Turn | None = None
        self._image_cost = None  # width, height -> ImageCost for the loaded model's projector
        self.read_while_typing = True  # start reading attached images before Send
        self._prefill_cancel: threading.Event | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store")  # database writes off the UI thread
        self._save_timer = QTimer(self, interval=SAVE_EVERY_MS, timeout=self._save_partial)
        self._meter_timer = QTimer(self, singleShot=True, interval=METER_DELAY_MS, timeout=self.update_meter)

        side, composer, chat = window.sidebar, window.composer, window.chat
        side.new_requested.connect(self.new_conversation)
        side.selected.connect(self.open_conversation)
        side.rename_requested.connect(self._rename)
        side.delete_requested.connect(self._delete)
        side.search_changed.connect(self.refresh_list)
        composer.send_requested.connect(self.send)
        composer.stop_requested.connect(self.stop)
        composer.images_changed.connect(self._images_changed)
        composer.files_offered.connect(self.offer_files)
        composer.refused.connect(window.show_error)
        composer.edit.textChanged.connect(self._meter_timer.start)
        window.settings_requested.connect(self.open_settings)
        window.export_requested.connect(self.export)
        chat.regenerate_requested.connect(self.regenerate)
        chat.edit_requested.connect(self.edit_last)
        worker.loading.connect(self._loading)
        worker.loaded.connect(self._loaded)
        worker.load_failed.connect(self._load_failed)
        worker.unloaded.connect(self._unloaded)
        worker.delta.connect(self._delta)
        worker.turn_finished.connect(self._finished)
        worker.turn_failed.connect(self._failed)
        worker.prefill_finished.connect(self._prefilled)

    # -- model -----------------------------------------------------------------------------

    @property
    def model_settings(self) -> settings_module.ModelSettings:
        return self.settings.for_model(self.model.name) if self.model else settings_module.ModelSettings()

    def load_model(self, model: InstalledModel) -> None:
        """Load in the engine's thread; the window stays usable meanwhile."""
        self.model, self.engine, self.counter, self._image_cost = model, None, None, None
        ms = self.model_settings
        self.worker.load(LoadRequest(model.name, model.text, model.mmproj,
                                     ms.engine(max_tokens_for(Detail(ms.detail), model.mmproj))))

    @Slot(str)
    def _loading(self, name: str) -> None:
        self.window.model_label.setText(f"Loading {name}…")

    @Slot(object)
    def _prefilled(self, _result: object) -> None:
        self.window.composer.set_reading(False)

    @Slot(object)
    def _loaded(self, engine: Engine) -> None:
        self.engine = engine
        detail = Detail(self.model_settings.detail)
        projector = engine.projector_info
        markers = ImageMarkers.from_tokenizer(engine.count_tokens)

        def cost(width: int, height: int) -> ImageCost:
            return image_cost(width, height, projector, detail, markers)

        self._image_cost = cost if projector is not None else None
        self.counter = PredictedCounter(engine.template.render, engine.count_tokens, cost)
        reader = f" · images by {engine.vision_plan.describe()}" if engine.vision_plan else ""
        self.window.model_label.setText(f"{self.model.name if self.model else ''}{reader}")
        self._images_changed(self.window.composer.images)
        self.model_ready.emit()

    @Slot()
    def _unloaded(self) -> None:
        if self.engine is not None and not self.engine.loaded:
            self.engine = self.counter = self._image_cost = None

    @Slot(str)
    def _load_failed(self, message: str) -> None:
        self.engine = self.counter = self._image_cost = None
        self.window.model_label.setText("No model loaded")
        self.window.show_error(message)

    # -- conversations ---------------------------------------------------------------------

    def refresh_list(self, *_: object) -> None:
        self.window.sidebar.show_conversations(self.store.conversations(self.window.sidebar.search.text()),
                                               self.conversation_id)

    def start(self) -> None:
        existing = self.store.conversations()
        if existing:
            self.open_conversation(existing[0].id)
        else:
            self.new_conversation()

    def new_conversation(self) -> None:
        if self.conversation_id is not None and not self._stored():  # this one is still empty: use it
            self.window.composer.edit.setFocus()
            return
        conversation = self.store.create_conversation(NEW_TITLE, self.model.name if self.model else None)
        self.open_conversation(conversation.id)

    def open_conversation(self, cid: int) -> None:
        if cid == self.conversation_id:
            return
        self.stop()
        self._cancel_prefill()
        self.conversation_id = cid
        chat = self.window.chat
        chat.clear()
        for m in self.store.messages(cid):
            chat.add(m.role, m.text, list(m.images), m.status, m.stats)
        self.refresh_list()
        self.update_meter()

    def _rename(self, cid: int, title: str) -> None:
        self.store.rename(cid, title)
        self.refresh_list()

    def _delete(self, cid: int) -> None:
        if self.turn and self.turn.conversation_id == cid:
            self.stop()
        self.store.delete(cid)
        if cid == self.conversation_id:
            self.conversation_id = None
            self.start()
        else:
            self.refresh_list()

    def _stored(self) -> list[StoredMessage]:
        return self.store.messages(self.conversation_id) if self.conversation_id is not None else []

    def _history(self, stored: list[StoredMessage] | None = None) -> list[Message]:
        """What the model is given before the new message: the system prompt, then every
        message shown (stopped and interrupted answers too: they are part of the chat)."""
        system = self.model_settings.system_prompt.strip()
        history = [Message.system(system)] if system else []
        return history + [m.to_message() for m in (self._stored() if stored is None else stored)]

    # -- sending ---------------------------------------------------------------------------

    def send(self, text: str, images: list[Path]) -> None:
        if self.turn is not None:
            return
        if self.engine is None or self.counter is None:
            self.window.show_error("The model is still loading; send again in a moment." if self.model
                                   else "Choose a model first (Model → Choose model…).")
            return
        history = self._history()
        budget = self._plan(history, Message.user(text, images=images))
        if not budget.fits:
            self.window.show_error(budget.message())
            return
        question = self.store.add_message(self.conversation_id, "user", text, images=images)
        self.window.chat.add("user", text, list(question.images))
        if self.store.conversation(self.conversation_id).title == NEW_TITLE and text:
            self.store.rename(self.conversation_id, _title_from(text))
        self.window.composer.clear()
        self._answer(history, question.to_message(), budget)

    def _answer(self, history: list[Message], question: Message, budget: ContextBudget) -> None:
        answer = self.store.add_message(self.conversation_id, "assistant", "", status=STREAMING,
                                        model=self.model.name if self.model else None)
        bubble = self.window.chat.add("assistant", "")
        self.turn = _Turn(self.conversation_id, answer.id, bubble)
        self.window.composer.set_busy(True)
        self.worker.run_turn(TurnRequest(tuple(messages_to_send(history, question, budget)),
                                         self.model_settings.sampling(), self.turn.cancel))
        self._save_timer.start()
        self.refresh_list()

    def stop(self) -> None:
        if self.turn is not None:
            self.turn.cancel.set()

    def regenerate(self) -> None:
        stored = self._stored()
        if self.turn is not None or self.engine is None or not stored or stored[-1].role != "assistant":
            return
        self.store.delete_from(self.conversation_id, stored[-1].id)
        self.window.chat.remove_from(len(stored) - 1)
        *earlier, question = self._history(stored[:-1])
        budget = self._plan(earlier, question)
        if budget.fits:
            self._answer(earlier, question, budget)
        else:
            self.window.show_error(budget.message())

    def edit_last(self) -> None:
        """Put the last question back in the composer; it and what followed leave the chat."""
        stored = self._stored()
        questions = [i for i, m in enumerate(stored) if m.role == "user"]
        if self.turn is not None or not questions:
            return
        index = questions[-1]
        self.store.delete_from(self.conversation_id, stored[index].id)
        self.window.chat.remove_from(index)
        composer = self.window.composer
        composer.clear()
        composer.set_text(stored[index].text)
        composer.add_files(list(stored[index].images))
        composer.edit.setFocus()

    @Slot(str)
    def _delta(self, piece: str) -> None:
        if self.turn is None:
            return
        self.turn.text += piece
        if self.turn.conversation_id == self.conversation_id:
            self.turn.bubble.append(piece)
            self.window.chat.scroll_to_end()

    def _save_partial(self) -> None:
        if self.turn is not None:
            self._writer.submit(self.store.update_message, self.turn.message_id, text=self.turn.text)

    @Slot(object)
    def _finished(self, result: TurnResult) -> None:
        turn, self.turn = self.turn, None
        self._save_timer.stop()
        if turn is None:
            return
        status = STOPPED if result.stats.finish_reason == "cancelled" else COMPLETE
        stats = result.stats.as_dict()
        # after any partial save still queued; waiting takes a millisecond and keeps the order
        self._writer.submit(self.store.update_message, turn.message_id, text=result.text, status=status,
                            stats=stats).result()
        if turn.conversation_id == self.conversation_id:
            turn.bubble.set_text(result.text)
            turn.bubble.set_status(status)
            turn.bubble.set_figures(stats)
        self.window.composer.set_busy(False)
        self.update_meter()
        self.answered.emit()

    @Slot(str)
    def _failed(self, message: str) -> None:
        turn, self.turn = self.turn, None
        self._save_timer.stop()
        if turn is not None:
            self._writer.submit(self.store.update_message, turn.message_id, text=turn.text, status=STOPPED).result()
            turn.bubble.set_status(STOPPED)
        self.window.composer.set_busy(False)
        self.window.show_error(message)
        self.answered.emit()

    # -- images and the meter --------------------------------------------------------------

    def _images_changed(self, images: list[Path]) -> None:
        """Show each image's cost, and start reading the images while the user types."""
        composer = self.window.composer
        if self.engine is None or self._image_cost is None:
            return
        speed = self.engine.speed
        for path in images:
            try:
                cost = self._image_cost(*prepared_size(path))
            except SmolChatError as e:
                composer.set_cost(path, str(e))
                continue
            wait = speed.wait_s(cost.tiles, cost.tokens)
            composer.set_cost(path, f"{cost.tiles} tiles · {cost.tokens:,} tokens"
                                    + (f" · ~{wait:.0f} s" if wait is not None else ""))
        self._cancel_prefill()
        if images and self.turn is None and self.read_while_typing:
            self._prefill_cancel = threading.Event()
            composer.set_reading(True)
            self.worker.prefill(PrefillRequest((*self._history(), Message.user("", images=images)),
                                               self._prefill_cancel))
        self.update_meter()

    def offer_files(self, files: list[Path]) -> None:
        """Attach the pictures among ``files``; refuse the rest, naming each."""
        good = []
        for path in files:
            try:
                prepared_size(path)  # reads the header only
            except ImageError as e:
                reason = str(e).split(": ", 1)[-1] if ": " in str(e) else "it is not a picture SmolChat can read."
                self.window.composer.refused.emit(f"{path.name} was not added: {reason}")
                continue
            good.append(path)
        self.window.composer.attach(good)

    def _cancel_prefill(self) -> None:
        if self._prefill_cancel is not None:
            self._prefill_cancel.set()
            self._prefill_cancel = None
        self.window.composer.set_reading(False)

    def _plan(self, history: list[Message], new: Message) -> ContextBudget:
        ms = self.model_settings
        image_tokens = {}
        if self._image_cost is not None and new.images:  # the new message's share, for the meter's breakdown
            try:
                image_tokens[len(history)] = sum(self._image_cost(*prepared_size(p)).tokens for p in new.images)
            except SmolChatError:
                pass  # the count itself reports an unreadable image
        return plan_context(self.counter, history, new, n_ctx=ms.n_ctx, reply_tokens=ms.max_tokens,
                            image_tokens=image_tokens)

    def update_meter(self) -> None:
        composer = self.window.composer
        if self.counter is None or self.conversation_id is None:
            composer.set_meter(0, self.model_settings.n_ctx, "ok", "", "No model loaded yet")
            return
        new = Message.user(composer.edit.toPlainText(), images=composer.images)
        try:
            budget = self._plan(self._history(), new)
        except SmolChatError as e:
            composer.set_meter(0, self.model_settings.n_ctx, "over", str(e), str(e))
            return
        level = "over" if not budget.fits else "near" if budget.dropped or budget.used > NEAR_LIMIT * budget.n_ctx \
            else "ok"
        parts = {"history": budget.share("system") + budget.share("turn"),
                 "images": sum(i.image_tokens for i in budget.items if i.kind == "message"),
                 "message": budget.share("message"), "reply": budget.share("reply")}
        parts["message"] -= parts["images"]
        tooltip = (f"History {parts['history']:,} · images {parts['images']:,} · this message {parts['message']:,}"
                   f" · reply {parts['reply']:,} tokens (of {budget.n_ctx:,})")
        composer.set_meter(budget.used, budget.n_ctx, level, budget.message() or "", tooltip)

    # -- export --------------------------------------------------------------------------------

    def export(self) -> None:
        if self.conversation_id is None:
            return
        conversation = self.store.conversation(self.conversation_id)
        name, chosen = QFileDialog.getSaveFileName(self.window, "Export conversation", f"{conversation.title}.md",
                                                   "Markdown, images alongside (*.md);;JSON (*.json)")
        if not name:
            return
        path = Path(name)
        write = to_json if path.suffix.lower() == ".json" or "JSON" in chosen else to_markdown
        try:
            write(conversation, self.store.messages(self.conversation_id), path)
        except OSError as e:
            self.window.show_error(f"The conversation could not be exported: {e.strerror or e}.")
            return
        self.window.show_status(f"Exported to {path}")

    # -- settings ------------------------------------------------------------------------------

    def settings_dialog(self) -> SettingsDialog | None:
        """The settings dialog for the loaded model (None when none is loaded)."""
        if self.engine is None or self.model is None:
            self.window.show_error("Load a model first: its settings depend on it.")
            return None
        text, projector = self.engine.text_info, self.engine.projector_info
        machine = machine_memory()
        loaded = memory_settings(self.engine)
        gpu = suggest_gpu_layers(text, projector, machine, n_ctx=self.model_settings.n_ctx, **loaded)
        largest = largest_context(text, projector, machine, **loaded)
        return SettingsDialog(self.model.name, self.model_settings, max_gpu_layers=text.max_gpu_layers,
                              gpu_note=gpu.message, largest_n_ctx=largest, n_ctx_train=text.n_ctx_train,
                              parent=self.window)

    def open_settings(self) -> None:
        dialog = self.settings_dialog()
        if dialog is not None and dialog.exec():
            self.apply_settings(dialog.chosen())

    def apply_settings(self, chosen: settings_module.ModelSettings) -> None:
        assert self.model is not None
        reload = chosen.needs_reload(self.model_settings)
        self.settings = self.settings.with_model_settings(self.model.name, chosen)
        try:
            settings_module.save(self.settings)
        except OSError as e:
            self.window.show_error(f"The settings could not be saved: {e.strerror or e}.")
        if reload:
            self.load_model(self.model)
        self.update_meter()

    def close(self) -> None:
        self.stop()
        self._cancel_prefill()
        self._meter_timer.stop()
        self._save_timer.stop()
        self.engine = self.counter = self._image_cost = None  # the engine is about to be unloaded
        self._writer.shutdown(wait=True)


def _title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= 48 else words[:47].rsplit(" ", 1)[0] + "…"
