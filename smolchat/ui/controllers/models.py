"""The model picker's behaviour: listing repos, estimates, downloads, switching, import, removal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from smolchat.errors import SmolChatError
from smolchat.models.catalog import CATALOG, DEFAULT_REPO
from smolchat.models.download import Progress
from smolchat.models.hub import Hub, RepoListing
from smolchat.models.library import InstalledModel, Library
from smolchat.remote import RemoteServer, ServerSpec, server_url
from smolchat.ui.controllers.turns import TurnController
from smolchat.ui.views.connect_dialog import ConnectDialog
from smolchat.ui.views.main_window import MainWindow
from smolchat.ui.views.model_picker import ModelPicker
from smolchat.ui.workers.jobs import DownloadJob, Job, ListingJob
from smolchat.units import format_bytes


class ModelsController(QObject):
    installed_changed = Signal()
    listing_shown = Signal()
    default_shown = Signal()  # the welcome screen shows the recommended model's size, or why it cannot

    def __init__(
        self, window: MainWindow, turns: TurnController, library: Library | None = None, hub: Hub | None = None
    ) -> None:
        super().__init__(window)
        self.window, self.turns = window, turns
        self.library = library or Library()
        self.hub = hub or Hub()
        self.picker: ModelPicker | None = None
        self.listing: RepoListing | None = None
        self._listing_job: ListingJob | None = None
        self.download: DownloadJob | None = None
        self.connect_dialog: ConnectDialog | None = None
        self._default_job: ListingJob | None = None
        self._default_listing: RepoListing | None = None  # the recommended repo, as the welcome screen listed it
        self._download_when_listed = False  # the welcome screen asked for the recommended model
        # The slider and the context box re-estimate the rows once they stop moving.
        self._estimate_timer = QTimer(self, singleShot=True, interval=150, timeout=self._estimate_again)
        window.model_picker_requested.connect(self.open)
        window.import_requested.connect(self.import_from_disk)
        window.first_run.download_requested.connect(self.download_default)

    def open(self, repo: str | None = None, listing: RepoListing | None = None) -> ModelPicker:
        """``listing``: the repo as just listed, shown without asking the Hub again."""
        if self.picker is None:
            self.picker = ModelPicker(self.window)
            p = self.picker
            p.repo_requested.connect(self.show_repo)
            p.download_requested.connect(self.start_download)
            p.cancel_requested.connect(self.cancel_download)
            p.use_requested.connect(self.use)
            p.remove_requested.connect(self.remove)
            p.import_requested.connect(self.import_pair)
            p.connect_requested.connect(self.open_connect)
            p.estimate_changed.connect(lambda *_: self._estimate_timer.start())
        current = self.turns.model.repo if self.turns.model and self.turns.model.repo else None
        chosen = repo or current or DEFAULT_REPO
        self.picker.show_catalog([(e.repo, f"{e.title} · {e.parameters}") for e in CATALOG], chosen)
        ms = self.turns.model_settings
        self.picker.show_assumptions(ms.n_ctx, ms.n_gpu_layers, gpu_unavailable())
        self._show_installed()
        self.picker.show()
        self.picker.raise_()
        self.show_repo(chosen, listing if listing is not None and listing.repo == chosen else None)
        return self.picker

    # -- a server's model ------------------------------------------------------------------

    def open_connect(self) -> ConnectDialog:
        if self.connect_dialog is None:
            self.connect_dialog = ConnectDialog(self.picker or self.window)
            self.connect_dialog.list_requested.connect(self.list_server)
            self.connect_dialog.use_requested.connect(self.use_server)
        self.connect_dialog.show()
        self.connect_dialog.raise_()
        return self.connect_dialog

    def list_server(self, address: str, key: str) -> None:
        """The server's models, asked for on a thread of its own (a server may take seconds)."""

        def work():
            with RemoteServer(address, api_key=key or None) as server:
                return server.url, server.models()

        job = Job(f"Connecting to {address}", work)
        job.finished.connect(lambda found: self.connect_dialog and self.connect_dialog.show_models(*found))
        job.failed.connect(lambda message: self.connect_dialog and self.connect_dialog.show_error(message))
        job.start()

    def use_server(self, address: str, key: str, model: str) -> None:
        self.turns.use_server(ServerSpec(server_url(address), key or None, model))
        if self.connect_dialog is not None:
            self.connect_dialog.accept()

    # -- listing ---------------------------------------------------------------------------

    def show_repo(self, repo: str, listing: RepoListing | None = None) -> None:
        if not repo.strip():
            return
        self.picker.show_listing(f"Listing {repo}…", [], [], None)
        self.listing = None
        # The job this replaces may still be running: it finishes on its own, and its result is
        # dropped (see _is_current), so what the picker shows is always the repo asked for last.
        n_ctx, n_gpu_layers = self.picker.assumptions()
        job = self._listing_job = ListingJob(
            self.hub, repo.strip(), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, listing=listing
        )
        job.finished.connect(self._listed)
        job.failed.connect(self._listing_failed)
        job.start()

    def _estimate_again(self) -> None:
        """The memory each format needs at the context and GPU layers chosen now: the repo as
        listed, estimated again off the UI thread (the Hub is not asked again)."""
        if self.listing is None or self.picker is None:
            return
        n_ctx, n_gpu_layers = self.picker.assumptions()
        job = self._listing_job = ListingJob(
            self.hub, self.listing.repo, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, listing=self.listing
        )
        job.finished.connect(self._listed)
        job.failed.connect(self._listing_failed)
        job.start()

    def _is_current(self) -> bool:
        """Whether the listing reporting now is the one the user is waiting for."""
        return self._listing_job is not None and self.sender() is self._listing_job

    @Slot(object)
    def _listed(self, result: tuple[RepoListing, list, set[str]]) -> None:
        if not self._is_current():
            return
        listing, estimates, downloaded = result
        n_ctx, self._listing_job = self._listing_job.n_ctx, None
        self.listing = listing
        rows = listing_rows(estimates, listing, downloaded)
        projectors = [
            (
                f.path,
                f"{f.format_name} · {format_bytes(f.size)}"
                + (" (recommended)" if f == listing.default_projector else ""),
            )
            for f in listing.projector_files
        ]
        note = "Shown as last listed: the Hub cannot be reached now." if listing.offline else ""
        if not listing.projector_files:
            note = "This repo has no vision projector (mmproj): SmolChat cannot read images with it."
        self.picker.show_listing(
            f"<b>{listing.repo}</b> · memory at a {n_ctx:,}-token context",
            rows,
            projectors,
            listing.default_projector.path if listing.default_projector else None,
            note,
        )
        if self._download_when_listed and listing.repo == DEFAULT_REPO:
            self._download_when_listed = False
            self._start_default()
        self.listing_shown.emit()

    @Slot(str)
    def _listing_failed(self, message: str) -> None:
        if not self._is_current():
            return
        self._listing_job = None
        self._download_when_listed = False
        self.picker.show_unreachable(message)
        self.listing_shown.emit()

    # -- the first run ---------------------------------------------------------------------

    def offer_default(self) -> None:
        """The welcome screen, with the recommended model's size and memory as the Hub lists it."""
        self.window.show_first_run(True)
        ms = self.turns.model_settings
        job = self._default_job = ListingJob(self.hub, DEFAULT_REPO, n_ctx=ms.n_ctx, n_gpu_layers=ms.n_gpu_layers)
        job.finished.connect(self._default_listed)
        job.failed.connect(self._default_unreachable)
        job.start()

    @Slot(str)
    def _default_unreachable(self, message: str) -> None:
        self.window.first_run.show_unreachable(message)
        self.default_shown.emit()

    @Slot(object)
    def _default_listed(self, result: tuple[RepoListing, list, set[str]]) -> None:
        listing, estimates, downloaded = result
        self._default_listing = listing
        row = next((r for r in listing_rows(estimates, listing, downloaded) if r["default"]), None)
        title = next((e.title for e in CATALOG if e.repo == DEFAULT_REPO), DEFAULT_REPO)
        if row is None or listing.default_projector is None:
            self._default_unreachable(f"{DEFAULT_REPO} lists no model SmolChat can use.")
            return
        size = format_bytes(self._sizes(listing, row["path"]))
        self.window.first_run.show_default(
            f"{title} ({row['format']})", size, row["memory"], row["fit"], row["message"]
        )
        self.default_shown.emit()

    @staticmethod
    def _sizes(listing: RepoListing, text_path: str) -> int:
        projector = listing.default_projector.size if listing.default_projector else 0
        return listing.file(text_path).size + projector

    def download_default(self) -> None:
        """One click from the welcome screen: the picker opens on the recommended model and its
        download starts there, with its progress in the row."""
        self._download_when_listed = True
        self.open(DEFAULT_REPO, self._default_listing)  # as the welcome screen showed it

    def _start_default(self) -> None:
        listing = self.listing
        if listing is None or listing.default_text is None or listing.default_projector is None:
            return
        self.start_download(listing.default_text.path, listing.default_projector.path)

    def import_from_disk(self) -> None:
        self.open().choose_import()

    # -- downloads -------------------------------------------------------------------------

    def start_download(self, text_path: str, projector_path: str) -> None:
        if self.listing is None or self.download is not None:
            return
        self.picker.mark_downloading(text_path)
        job = self.download = DownloadJob(
            self.hub, self.listing.repo, self.listing.file(text_path), self.listing.file(projector_path)
        )
        job.progress.connect(self._progress)
        job.finished.connect(self._downloaded)
        job.failed.connect(self._download_failed)
        job.start()

    def cancel_download(self) -> None:
        if self.download is not None:
            self.download.cancel()

    @Slot(object)
    def _progress(self, p: Progress) -> None:
        eta = f" · {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        self.picker.show_progress(
            p.done,
            p.total,
            f"{p.fraction:.0%} · {format_bytes(p.done)} of "
            f"{format_bytes(p.total)} · {format_bytes(int(p.speed))}/s{eta}",
        )

    def _keep_assumptions(self, name: str) -> None:
        """A model downloaded from the picker gets the context and GPU layers its memory was
        shown for."""
        if self.picker is None:
            return
        n_ctx, n_gpu_layers = self.picker.assumptions()
        chosen = self.turns.settings.for_model(name)
        if (chosen.n_ctx, chosen.n_gpu_layers) != (n_ctx, n_gpu_layers):
            self.turns.settings.set_model_settings(name, replace(chosen, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers))

    @Slot(object)
    def _downloaded(self, model: InstalledModel) -> None:
        self._keep_assumptions(model.name)
        self.download = None
        self.picker.download_ended(f"Installed {model.name}.")
        self._show_installed()
        self.installed_changed.emit()
        if self.turns.model is None:
            self.turns.load_model(model)

    @Slot(str)
    def _download_failed(self, message: str) -> None:
        self.download = None
        self.picker.download_ended(message)

    # -- installed -------------------------------------------------------------------------

    def _show_installed(self) -> None:
        current = self.turns.model.name if self.turns.model else None
        inventory = self.library.inventory()
        self.picker.show_installed(
            [m.name for m in inventory.installed],
            current,
            [(u.model, str(u.path), u.reason) for u in inventory.unusable],
        )

    def use(self, name: str) -> None:
        try:
            model = self.library.find(name)
        except SmolChatError as e:
            self.picker.show_notice(str(e))
            return
        self.turns.load_model(model)  # the old one is unloaded in the engine's thread first
        self._show_installed()

    def remove(self, name: str) -> None:
        if self.turns.model is not None and self.turns.model.name == name:
            self.picker.show_notice(f"{name} is in use: switch to another model before removing it.")
            return
        repo, _, quant = name.partition(":")
        try:
            self.library.remove(repo, quant or None)
        except SmolChatError as e:
            self.picker.show_notice(str(e))
            return
        self._show_installed()
        self.installed_changed.emit()

    def import_pair(self, text: str, mmproj: str) -> None:
        try:
            model = self.library.import_pair(Path(text), Path(mmproj))
        except SmolChatError as e:
            self.picker.show_notice(str(e))
            return
        self.picker.show_notice(f"Imported {model.name}.")
        self._show_installed()
        self.installed_changed.emit()
        if self.turns.model is None:
            self.turns.load_model(model)

    def close(self) -> None:
        self._listing_job = None  # left to end on its own, unseen: the Hub may take seconds to answer
        job, self.download = self.download, None
        if job is not None:
            job.blockSignals(True)  # the window is going: nothing more to show or load
            job.cancel()
            job.wait()  # it stops at its next chunk, keeping its part for next time


def listing_rows(estimates: list, listing: RepoListing, downloaded: set[str]) -> list[dict]:
    """The picker's rows for a repo's text models: format, size, memory, fit, and whether the
    file is on this computer already (``downloaded``: names in the cache)."""
    rows = []
    for f, estimate, fit in estimates:
        basis = "" if estimate.from_metadata else " (from file size)"
        rows.append(
            {
                "path": f.path,
                "format": f.format_name,
                "size": format_bytes(f.size),
                "memory": format_bytes(estimate.total) + basis,
                "fit": fit.fit.value,
                "message": fit.message,
                "summary": f.format.summary if f.format else "",
                "default": f == listing.default_text,
                "downloaded": f.path in downloaded,
            }
        )
    return rows


def gpu_unavailable() -> str | None:
    """Why the GPU-layer slider is off (this llama.cpp has no GPU support), or None."""
    from smolchat.budget.fit import NO_GPU_BUILD
    from smolchat.engine.backends import build_info

    return None if build_info().gpu_support else NO_GPU_BUILD
