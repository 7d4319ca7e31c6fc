"""The turns of the chat shown: loading the model, sending, stopping, regenerating, editing the
last question, the pictures attached and the context meter. Views report intent here; work goes
to other threads (the engine's, the counting thread, the store's thread for pictures and the
database); results come back as signals and go to the views and the store. The UI thread never
holds the engine, never renders a chat template, never tokenizes, hashes, copies or decodes a
picture.

A picture is kept in the store's image folder once, when it is attached: the composer holds the
kept file, and the read-ahead, the meter, the message stored and the turn all use that file.

Every request carries an id; a result whose request is no longer the one the window waits for
(a model replaced while it loaded, a meter count overtaken by typing, an answer of a turn that
ended) is dropped.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QTimer, Signal, Slot
from PySide6.QtGui import QImage

from smolchat import settings as settings_module
from smolchat.budget.context import ContextBudget, messages_to_send
from smolchat.budget.detail import Detail, max_tokens_for
from smolchat.budget.fit import largest_context, memory_settings, suggest_gpu_layers
from smolchat.budget.images import ImageCost, MediaCost, prepared_size
from smolchat.engine import EngineSettings, Message, ModelInfo, TurnResult
from smolchat.engine.engine import READING_IMAGES
from smolchat.engine.images import ImageError
from smolchat.engine.speed import Speed
from smolchat.errors import SmolChatError
from smolchat.media import ASK_ABOVE_PAGES, attach
from smolchat.media.attach import media_kind
from smolchat.media.pdf import extract_pages, page_count, parse_pages
from smolchat.media.video import NOT_TRAINED_ON_VIDEO, VIDEO_SUFFIXES, trained_on_video
from smolchat.models.library import InstalledModel
from smolchat.models.machine import machine_memory
from smolchat.remote import ServerSpec
from smolchat.store import COMPLETE, STOPPED, STREAMING, Store, StoredMessage
from smolchat.ui.controllers.conversations import ConversationController, drafts_dir
from smolchat.ui.controllers.settings import SettingsController
from smolchat.ui.views.chat_view import MessageBubble
from smolchat.ui.views.main_window import MainWindow
from smolchat.ui.views.settings_dialog import SettingsDialog
from smolchat.ui.workers.background import Background
from smolchat.ui.workers.counting import CostRequest, CountWorker, PlanRequest
from smolchat.ui.workers.engine_worker import (
    EngineWorker,
    LoadedModel,
    LoadRequest,
    PrefillRequest,
    TurnRequest,
    next_request_id,
)

SAVE_EVERY_MS = 1000  # a growing answer reaches the disk at least this often
METER_DELAY_MS = 150  # typing pauses this long before the meter is counted again
NEAR_LIMIT = 0.85
PASTED_NAME = "Pasted picture"


def png_bytes(image: QImage) -> bytes:
    """The picture as a PNG file's bytes."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("the PNG could not be written")
    buffer.close()
    return bytes(data.data())


@dataclass
class _Sending:
    """A question on its way: counted, then its pictures found kept, then stored and answered."""

    id: int  # of its count request
    cid: int
    history: list[Message]
    question: Message
    text: str = ""
    images: list[Path] = field(default_factory=list)
    sources: list[Path | None] = field(default_factory=list)  # the user's files, to keep again if need be
    replaces: StoredMessage | None = None  # the answer Regenerate writes again
    budget: ContextBudget | None = None


@dataclass
class _Turn:
    id: int
    conversation_id: int
    message_id: int
    bubble: MessageBubble
    cancel: threading.Event = field(default_factory=threading.Event)
    text: str = ""


class TurnController(QObject):
    answered = Signal()  # an answer ended (finished, stopped or failed) and is shown and saved
    model_ready = Signal()  # a model finished loading and the window shows it
    meter_updated = Signal()  # the meter shows the count of what is in the composer now
    costs_shown = Signal()  # the attached pictures show their cost

    def __init__(
        self,
        window: MainWindow,
        store: Store,
        worker: EngineWorker,
        settings: SettingsController,
        conversations: ConversationController,
        writer: Background,
    ) -> None:
        super().__init__(window)
        self.window, self.store, self.worker, self.settings = window, store, worker, settings
        self.conversations = conversations
        self.model: InstalledModel | None = None
        self.server: ServerSpec | None = None  # the model is a server's, at this address
        self._server_counted: tuple[int | None, int] | None = None  # its usage after the last turn
        self.model_info: ModelInfo | None = None  # the loaded model, as a snapshot
        self.speed = Speed()
        self.turn: _Turn | None = None
        self.read_while_typing = True  # start reading attached images before Send
        self._loaded_with = settings_module.ModelSettings()  # what the model was asked to load with
        self._load_id = 0  # the load the window waits for
        self._plan_id = 0  # the newest meter count asked for
        self._cost_id = 0
        self._prefill: tuple[int, threading.Event] | None = None
        self._sending: _Sending | None = None  # a Send or Regenerate waiting for its count or its pictures
        self._sources: dict[Path, Path | None] = {}  # attached kept file -> the user's file (None: pasted)
        self.counter = CountWorker()
        self.counter.planned.connect(self._planned)
        self.counter.costed.connect(self._costed)
        # Database writes and keeping pictures, in order, after the cleanup at start.
        self._writer = writer
        self._save_timer = QTimer(self, interval=SAVE_EVERY_MS, timeout=self._save_partial)
        self._meter_timer = QTimer(self, singleShot=True, interval=METER_DELAY_MS, timeout=self.update_meter)

        composer, chat = window.composer, window.chat
        composer.send_requested.connect(self.send)
        composer.stop_requested.connect(self.stop)
        composer.images_changed.connect(self._images_changed)
        composer.files_offered.connect(self.offer_files)
        composer.image_pasted.connect(self.keep_pasted)
        composer.text_changed.connect(self._meter_timer.start)
        window.settings_requested.connect(self.open_settings)
        chat.regenerate_requested.connect(self.regenerate)
        chat.edit_requested.connect(self.edit_last)
        conversations.opened.connect(self._conversation_opened)
        conversations.deleting.connect(self._conversation_deleting)
        settings.changed.connect(self._settings_changed)
        worker.loading.connect(self._loading)
        worker.loaded.connect(self._loaded)
        worker.load_failed.connect(self._load_failed)
        worker.delta.connect(self._delta)
        worker.turn_finished.connect(self._finished)
        worker.turn_failed.connect(self._failed)
        worker.prefill_finished.connect(self._prefilled)
        worker.speed_changed.connect(self._speed_changed)
        worker.progress.connect(self._progress)
        composer.edit_last_requested.connect(self.edit_last)

    # -- model -----------------------------------------------------------------------------

    @property
    def model_settings(self) -> settings_module.ModelSettings:
        return self.settings.for_model(self.model.name if self.model else None)

    def load_model(self, model: InstalledModel) -> None:
        """Load in the engine's thread; the window stays usable meanwhile."""
        self.server = None
        self.model, self.model_info = model, None
        self.conversations.model_name = model.name
        self.counter.use_model(None, Detail.FULL)
        ms = self._loaded_with = self.model_settings
        self._load_id = self.worker.load(
            LoadRequest(
                model.name, model.text, model.mmproj, ms.engine(max_tokens_for(Detail(ms.detail), model.mmproj))
            )
        )

    def use_server(self, spec: ServerSpec) -> None:
        """Let a server's model answer (spec.model named): the engine's thread connects, and
        the window then works as with a model of its own, counting by estimates."""
        assert spec.model is not None
        name = f"{spec.model} at {spec.url}"
        # a stand-in for the library's entry: the name keys its settings and the messages' model
        self.model = InstalledModel(name, Path(spec.model), Path(spec.model), None, 0)
        self.model_info, self.server = None, spec
        self.conversations.model_name = name
        self.counter.use_model(None, Detail.FULL)
        self._loaded_with = self.model_settings
        self._load_id = self.worker.load(LoadRequest(name, Path(), None, EngineSettings(), server=spec))

    @Slot(int, str)
    def _loading(self, request_id: int, name: str) -> None:
        if request_id == self._load_id:
            self.window.show_model_loading(name)
            self.window.show_progress(f"Loading {name}")

    @Slot(int, str, float, float)
    def _progress(self, request_id: int, stage: str, done: float, total: float) -> None:
        """How far a load, a turn or the reading of the attachments has come."""
        known = None if total < 0 else total
        if request_id == self._load_id and self.model_info is None:
            self.window.show_progress(stage, done, known)
        elif self._prefill is not None and request_id == self._prefill[0]:
            if stage == READING_IMAGES and known:
                self.window.composer.set_reading_progress(int(done), int(known))
        elif self.turn is not None and request_id == self.turn.id and stage == READING_IMAGES:
            self.window.show_progress(stage, done, known)

    @Slot(object)
    def _loaded(self, loaded: LoadedModel) -> None:
        if loaded.request_id != self._load_id:
            return  # another model was chosen while this one loaded; the engine's thread replaces it
        info = self.model_info = loaded.info
        self.speed = info.speed
        self.counter.use_model(info, Detail(self.model_settings.detail))
        detail = f"images by {info.vision_plan.describe()}" if info.vision_plan else ""
        self.window.end_progress()
        self.window.show_first_run(False)
        self.window.show_model(loaded.name, "counts estimated" if info.server else detail)
        if info.template_note:
            self.window.show_error(info.template_note)
        self._images_changed(self.window.composer.images)
        self.model_ready.emit()

    @Slot(int, str)
    def _load_failed(self, request_id: int, message: str) -> None:
        if request_id != self._load_id:
            return
        self.model_info = None
        self.window.show_no_model()
        self.window.end_progress()
        self.window.show_error(message, ("Choose another model…", self.window.model_picker_requested.emit))

    @Slot(object)
    def _speed_changed(self, speed: Speed) -> None:
        self.speed = speed

    # -- the conversation shown ------------------------------------------------------------

    def _conversation_opened(self, _cid: int) -> None:
        self.stop()
        self._cancel_send()
        self._cancel_prefill()
        self.update_meter()

    def _conversation_deleting(self, cid: int) -> None:
        if self.turn and self.turn.conversation_id == cid:
            self.stop()
        if self._sending is not None and self._sending.cid == cid:
            self._cancel_send()

    def history(self, stored: list[StoredMessage] | None = None) -> list[Message]:
        """What the model is given before the new message: the system prompt, then every
        message shown (stopped and interrupted answers too: they are part of the chat)."""
        system = self.model_settings.system_prompt.strip()
        history = [Message.system(system)] if system else []
        return history + [m.to_message() for m in (self.conversations.stored() if stored is None else stored)]

    def _store_failed(self, error: BaseException) -> None:
        self.conversations.store_failed(error)

    # -- sending ---------------------------------------------------------------------------

    def send(self, text: str, images: list[Path]) -> None:
        """Count the new message against the context (in the counting thread), make sure its
        pictures are kept (they were when attached), then store it and start the answer."""
        if self.turn is not None or self._sending is not None:
            return
        if self.model_info is None:
            self.window.show_error(
                "The model is still loading; send again in a moment."
                if self.model
                else "Choose a model first (Model → Choose model…)."
            )
            return
        images = [Path(p) for p in images]
        self._begin_send(
            _Sending(
                next_request_id(),
                self.conversations.conversation_id,
                self.history(),
                Message.user(text, images=images),
                text=text,
                images=images,
                sources=[self._sources.get(p, p) for p in images],
            )
        )

    def regenerate(self) -> None:
        stored = self.conversations.stored()
        if (
            self.turn is not None
            or self._sending is not None
            or self.model_info is None
            or not stored
            or stored[-1].role != "assistant"
        ):
            return
        *earlier, question = self.history(stored[:-1])
        self._begin_send(
            _Sending(next_request_id(), self.conversations.conversation_id, earlier, question, replaces=stored[-1])
        )

    def _begin_send(self, sending: _Sending) -> None:
        self._sending = sending
        self.window.composer.set_busy(True)
        self.counter.plan(self._plan_request(sending.id, sending.history, sending.question, False))

    def _cancel_send(self) -> None:
        if self._sending is not None:
            self._sending = None
            self.window.composer.set_busy(False)

    def _send_counted(self, sending: _Sending, budget: ContextBudget | str) -> None:
        if isinstance(budget, str) or not budget.fits:
            self._cancel_send()
            self.window.show_error(budget if isinstance(budget, str) else budget.message())
            return
        sending.budget = budget
        if not sending.images:
            self._send_kept(sending, [])
            return

        def kept() -> list[Path]:
            # Attached pictures are kept already: nothing is read. One whose kept file went
            # meanwhile (a conversation deleted that had the same picture) is kept again from
            # the user's file; a file sent by name alone is kept now.
            return [
                self.store.keep_image(path if path.is_file() or source is None else source)
                for path, source in zip(sending.images, sending.sources)
            ]

        self._writer.run(kept, done=lambda paths: self._send_kept(sending, paths), failed=self._send_failed)

    def _send_kept(self, sending: _Sending, kept: list[Path]) -> None:
        """The pictures are in the store's folder: the rows are quick to write now."""
        if self._sending is not sending:
            return  # cancelled (another conversation was opened)
        self._sending = None
        cid, model = sending.cid, self.model.name if self.model else None
        chat = self.window.chat
        try:
            if sending.replaces is not None:
                self.store.delete_from(cid, sending.replaces.id)
                chat.remove_last()
                question = sending.question
            else:
                stored = self.store.add_message(cid, "user", sending.text, images=kept)
                self.conversations.question_asked(cid, sending.text)
                chat.add("user", stored.text, list(stored.images))
                self.window.composer.clear()
                question = stored.to_message()
            answer = self.store.add_message(cid, "assistant", "", status=STREAMING, model=model)
        except (SmolChatError, OSError) as e:
            self._send_failed(e)
            return
        bubble = chat.add("assistant", "")
        self.turn = _Turn(next_request_id(), cid, answer.id, bubble)
        self.worker.run_turn(
            TurnRequest(
                tuple(messages_to_send(sending.history, question, sending.budget)),
                self.model_settings.sampling(),
                self.turn.cancel,
                self.turn.id,
            )
        )
        self._save_timer.start()
        self.conversations.refresh_list()

    def _send_failed(self, error: BaseException) -> None:
        self._cancel_send()
        self._store_failed(error)

    def stop(self) -> None:
        if self.turn is not None:
            self.turn.cancel.set()

    def edit_last(self) -> None:
        """Put the last question back in the composer; it and what followed leave the chat."""
        stored = self.conversations.stored()
        questions = [i for i, m in enumerate(stored) if m.role == "user"]
        if self.turn is not None or self._sending is not None or not questions:
            return
        index, cid = questions[-1], self.conversations.conversation_id

        def taken_back(deleted: list[StoredMessage]) -> None:
            if cid != self.conversations.conversation_id:
                return
            self.window.chat.remove_from(index)
            composer = self.window.composer
            composer.clear()
            composer.set_text(deleted[0].text)
            composer.add_files(list(deleted[0].images))  # kept again once offered: attached as any picture
            composer.focus()
            self.update_meter()

        # the question's pictures stay as drafts until they are kept again
        self._writer.run(
            lambda: self.store.delete_from(cid, stored[index].id, keep_images_in=drafts_dir()),
            done=taken_back,
            failed=self._store_failed,
        )

    @Slot(int, str)
    def _delta(self, turn_id: int, piece: str) -> None:
        turn = self.turn
        if turn is None or turn.id != turn_id:
            return
        turn.text += piece
        if turn.conversation_id == self.conversations.conversation_id:
            turn.bubble.append(piece)  # the view follows it unless the user scrolled up
        self.window.end_progress()  # the images are read: the answer is being written

    def _save_partial(self) -> None:
        if self.turn is not None:
            turn = self.turn
            self._writer.run(lambda: self.store.update_message(turn.message_id, text=turn.text))

    @Slot(int, object)
    def _finished(self, turn_id: int, result: TurnResult) -> None:
        turn = self.turn
        if turn is None or turn.id != turn_id:
            return
        self.turn = None
        self._save_timer.stop()
        self.window.end_progress()
        status = STOPPED if result.stats.finish_reason == "cancelled" else COMPLETE
        stats = result.stats.as_dict()
        if turn.conversation_id == self.conversations.conversation_id:
            turn.bubble.set_text(result.text)
            turn.bubble.set_status(status)
            turn.bubble.set_figures(stats)
        self.window.composer.set_busy(False)
        if self.model_info is not None and self.model_info.server and result.stats.prompt_tokens:
            # the server's own count, exact where the meter can only estimate
            self._server_counted = (turn.conversation_id, result.stats.prompt_tokens + result.stats.generated_tokens)
        self.update_meter()
        # after any partial save still queued: the writer keeps the order
        self._writer.run(
            lambda: self.store.update_message(turn.message_id, text=result.text, status=status, stats=stats),
            done=lambda _: self.answered.emit(),
            failed=self._answer_not_saved,
        )

    @Slot(int, str)
    def _failed(self, turn_id: int, message: str) -> None:
        turn = self.turn
        if turn is None or turn.id != turn_id:
            return
        self.turn = None
        self._save_timer.stop()
        self.window.end_progress()
        if turn.conversation_id == self.conversations.conversation_id:
            turn.bubble.set_status(STOPPED)
        self.window.composer.set_busy(False)
        self.window.show_error(message)
        self._writer.run(
            lambda: self.store.update_message(turn.message_id, text=turn.text, status=STOPPED),
            done=lambda _: self.answered.emit(),
            failed=self._answer_not_saved,
        )

    def _answer_not_saved(self, error: BaseException) -> None:
        self._store_failed(error)
        self.answered.emit()

    # -- images and the meter --------------------------------------------------------------

    def _images_changed(self, images: list[Path]) -> None:
        """Count each image's cost, and start reading the images while the user types."""
        self._sources = {path: source for path, source in self._sources.items() if path in images}
        self._cancel_prefill()
        if self.model_info is None:
            return
        self._cost_id = next_request_id()
        if images:
            self.counter.cost(CostRequest(self._cost_id, tuple(images)))
        if images and self.turn is None and self.read_while_typing and self.model_info.has_vision:
            prefill = self._prefill = (next_request_id(), threading.Event())
            self.window.composer.set_reading(True)
            self.worker.prefill(
                PrefillRequest((*self.history(), Message.user("", images=images)), prefill[1], prefill[0])
            )
        self.update_meter()

    @Slot(int, object)
    def _costed(self, request_id: int, costs: dict[Path, ImageCost | MediaCost | str]) -> None:
        if request_id != self._cost_id:
            return
        composer = self.window.composer
        for path, cost in costs.items():
            if isinstance(cost, str):
                composer.set_cost(path, cost)
                continue
            wait = self.speed.wait_s(cost.tiles, cost.tokens)
            composer.set_tiles(path, cost.tiles)
            if isinstance(cost, MediaCost):
                what = f"{cost.frames} frames" if cost.frames else f"{cost.pages} page{'s' if cost.pages != 1 else ''}"
                what += f" · {cost.tiles} tiles" if cost.pages else ""
            else:
                what = f"{cost.tiles} tiles"
            about = f"~{wait:.0f} s" if wait is not None else ""
            composer.set_cost(path, f"{what} · {cost.tokens:,} tokens", about)
        self.costs_shown.emit()

    @Slot(int, object)
    def _prefilled(self, request_id: int, result: object) -> None:
        if self._prefill is not None and self._prefill[0] == request_id:
            self._prefill = None
            if result is not None:
                self.window.composer.set_ready()
            self.window.composer.set_reading(False)

    def _cancel_prefill(self) -> None:
        if self._prefill is not None:
            self._prefill[1].set()
            self._prefill = None
        self.window.composer.set_reading(False)

    def offer_files(self, files: list[Path]) -> None:
        """Attach the pictures, clips and PDFs among ``files``, kept in the store's folder;
        refuse the rest, naming each. Off the UI thread: a file on a slow disk, or a pipe, must
        not freeze the window; in the store's thread, so the cleanup at start never takes a
        file kept now. A PDF of many pages first asks which to send."""

        def keep() -> tuple[list[tuple[Path, str, Path]], list[str], list[tuple[Path, int]]]:
            kept, refused, ask = [], [], []
            for path in files:
                try:
                    kind = media_kind(path)
                    if kind == "pages" and (count := page_count(path)) > ASK_ABOVE_PAGES:
                        ask.append((path, count))
                        continue
                    if kind is None:
                        prepared_size(path)  # reads the header only
                    else:
                        attach.check([path] if kind == "pages" else [], [path] if kind == "video" else [])
                    kept.append((self.store.keep_image(path), path.name, path))
                except ImageError as e:
                    refused.append(f"{path.name} was not added: {e.reason}")
                except SmolChatError as e:  # the store's message names the file
                    refused.append(str(e))
            return kept, refused, ask

        def checked(result: tuple[list[tuple[Path, str, Path]], list[str], list[tuple[Path, int]]]) -> None:
            kept, refused, ask = result
            for message in refused:
                self.window.composer.refuse(message)
            info = self.model_info
            clips = any(source.suffix.lower() in VIDEO_SUFFIXES for _, _, source in kept)
            if clips and info is not None and not trained_on_video(info.text_info.name, info.text_info.path.name):
                self.window.show_status(NOT_TRAINED_ON_VIDEO, 15)
            self._attach(kept)
            for path, count in ask:
                self._ask_pages(path, count)

        self._writer.run(keep, done=checked)

    def _ask_pages(self, path: Path, count: int) -> None:
        """Ask which pages of a long PDF to send; keep a PDF of just those, then attach it."""
        spec = self.window.ask_pages(path, path.name, count)
        if spec is None:
            return
        try:
            pages = parse_pages(spec, count, path.name)
        except ImageError as e:
            self.window.composer.refuse(f"{path.name} was not added: {e.reason}")
            return

        def keep() -> Path:
            return self.store.keep_image_data(extract_pages(path, pages), ".pdf")

        def not_kept(error: BaseException) -> None:
            self.window.composer.refuse(
                f"{path.name} was not added: {error.reason}" if isinstance(error, ImageError) else str(error)
            )

        name = f"{path.name} (pages {spec.strip()})"
        self._writer.run(keep, done=lambda kept: self._attach([(kept, name, None)]), failed=not_kept)

    def keep_pasted(self, image: QImage) -> None:
        """A picture pasted or dropped as data: kept in the store's folder as a PNG, off the UI
        thread, then attached."""
        if image.isNull():
            self.window.composer.refuse("The pasted data is not a picture.")
            return
        image = image.copy()  # this thread's copy stays; the background one is its own

        def keep() -> Path:
            kept = self.store.keep_image_data(png_bytes(image), ".png")
            prepared_size(kept)  # refused as an attached file would be
            return kept

        def not_kept(error: BaseException) -> None:
            self.window.composer.refuse(
                f"The pasted picture was not added: {error.reason}"
                if isinstance(error, ImageError)
                else f"The pasted picture could not be kept ({error}); is the disk full?"
            )

        self._writer.run(keep, done=lambda kept: self._attach([(kept, PASTED_NAME, None)]), failed=not_kept)

    def _attach(self, pictures: list[tuple[Path, str, Path | None]]) -> None:
        for path, _name, source in pictures:
            self._sources[path] = source
        self.window.composer.attach([(path, name) for path, name, _source in pictures])

    def _plan_request(self, request_id: int, history: list[Message], new: Message, skippable: bool) -> PlanRequest:
        ms = self.model_settings
        info = self.model_info
        n_ctx = info.settings.n_ctx if info is not None and info.server else ms.n_ctx  # a server's is its own
        return PlanRequest(request_id, tuple(history), new, n_ctx, ms.max_tokens, skippable)

    def update_meter(self) -> None:
        """Ask the counting thread for the budget of what is in the composer now."""
        composer = self.window.composer
        if self.model_info is None or self.conversations.conversation_id is None:
            composer.set_meter(0, self.model_settings.n_ctx, "ok", "", "No model loaded yet")
            return
        self._plan_id = next_request_id()
        new = Message.user(composer.text(), images=composer.images)
        self.counter.plan(self._plan_request(self._plan_id, self.history(), new, True))

    @Slot(int, object)
    def _planned(self, request_id: int, budget: ContextBudget | str) -> None:
        if self._sending is not None and request_id == self._sending.id:
            self._send_counted(self._sending, budget)
            return
        if request_id != self._plan_id:
            return
        composer = self.window.composer
        if isinstance(budget, str):
            composer.set_meter(0, self.model_settings.n_ctx, "over", budget, budget)
            self.meter_updated.emit()
            return
        level = (
            "over" if not budget.fits else "near" if budget.dropped or budget.used > NEAR_LIMIT * budget.n_ctx else "ok"
        )
        parts = {
            "history": budget.share("system") + budget.share("turn"),
            "images": sum(i.image_tokens for i in budget.items if i.kind == "message"),
            "message": budget.share("message"),
            "reply": budget.share("reply"),
        }
        parts["message"] -= parts["images"]
        tooltip = (
            f"History {parts['history']:,} · images {parts['images']:,} · this message {parts['message']:,}"
            f" · reply {parts['reply']:,} tokens (of {budget.n_ctx:,})"
        )
        estimate = self.model_info is not None and self.model_info.server is not None
        if estimate:
            tooltip = "An estimate: the server's tokenizer decides. " + tooltip
            counted = self._server_counted
            if counted is not None and counted[0] == self.conversations.conversation_id:
                tooltip += f" The server counted {counted[1]:,} tokens up to its last answer."
        composer.set_meter(budget.used, budget.n_ctx, level, budget.message() or "", tooltip, estimate=estimate)
        self.meter_updated.emit()

    # -- settings ------------------------------------------------------------------------------

    def settings_dialog(self) -> SettingsDialog | None:
        """The settings dialog for the loaded model (None when none is loaded)."""
        if self.model_info is None or self.model is None:
            self.window.show_error("Load a model first: its settings depend on it.")
            return None
        if self.model_info.server:
            self.window.show_error("A server's model is set up on the server (its context, GPU and threads).")
            return None
        text, projector = self.model_info.text_info, self.model_info.projector_info
        machine = machine_memory()
        loaded = memory_settings(self.model_info)
        gpu = suggest_gpu_layers(text, projector, machine, n_ctx=self.model_settings.n_ctx, **loaded)
        largest = largest_context(text, projector, machine, **loaded)
        return SettingsDialog(
            self.model.name,
            self.model_settings,
            max_gpu_layers=text.max_gpu_layers,
            gpu_note=gpu.message,
            largest_n_ctx=largest,
            n_ctx_train=text.n_ctx_train,
            parent=self.window,
        )

    def open_settings(self) -> None:
        dialog = self.settings_dialog()
        if dialog is not None and dialog.exec():
            self.apply_settings(dialog.chosen())

    def apply_settings(self, chosen: settings_module.ModelSettings) -> None:
        assert self.model is not None
        self.settings.set_model_settings(self.model.name, chosen)  # saved; _settings_changed follows

    def _settings_changed(self, name: str) -> None:
        if self.model is None or name != self.model.name:
            return
        if self.server is None and self.model_settings.needs_reload(self._loaded_with):
            self.load_model(self.model)
        self.update_meter()

    # -- end -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.stop()
        self._cancel_prefill()
        self._meter_timer.stop()
        self._save_timer.stop()
        self.model_info = None
        self.counter.stop()
