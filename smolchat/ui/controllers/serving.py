"""Serving the window's model to other programs on this computer: the local API on the
window's own engine service, so there is one model in memory and one owner of it. The
window's requests go first (interactive priority); the server's wait behind them."""

from __future__ import annotations

import socket
import threading

from PySide6.QtCore import QObject, Signal

from smolchat.ui.views.serve_dialog import ServeDialog

HOST = "127.0.0.1"  # this computer only: the window offers no way to open the API to others


class ServingController(QObject):
    serving_changed = Signal(str)  # the base URL, "" when stopped

    def __init__(self, window, worker, turns) -> None:
        super().__init__(window)
        self.window, self.worker, self.turns = window, worker, turns
        self.dialog: ServeDialog | None = None
        self.base_url = ""
        self._server = None
        self._thread: threading.Thread | None = None
        self._served = None
        window.serve_requested.connect(self.open)
        worker.loading.connect(lambda *_: self._model_changed())
        turns.model_ready.connect(self._model_changed)

    def open(self) -> ServeDialog:
        if self.dialog is None:
            self.dialog = ServeDialog(self.window)
            self.dialog.start_requested.connect(self.start)
            self.dialog.stop_requested.connect(self.stop)
        if self.base_url:
            self.dialog.show_serving(self.base_url, self._model_name())
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def start(self, port: int) -> str | None:
        """Serve on ``port`` (0: any free one); a message when it cannot."""
        if self._server is not None:
            return None
        import uvicorn

        from smolchat.api.server import ServedModel, create_app

        try:  # bound here, so that a port in use is said at once rather than in a log
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((HOST, port))
        except OSError as e:
            listener.close()
            message = f"Port {port} cannot be used ({e.strerror or e}); choose another."
            if self.dialog is not None:
                self.dialog.show_stopped(message)
            return message
        self._served = ServedModel(id="", n_ctx=0)
        self._model_changed()
        app = create_app(self.worker.service, self._served)
        self._server = server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="api", daemon=True)
        self._thread.start()
        self.base_url = f"http://{HOST}:{listener.getsockname()[1]}"
        if self.dialog is not None:
            self.dialog.show_serving(self.base_url, self._model_name())
        self.serving_changed.emit(self.base_url)
        return None

    def stop(self) -> None:
        """Stop listening; requests still running are cancelled as their clients are cut off."""
        if self._server is not None:
            self._server.should_exit = True  # its thread ends by itself, without the window waiting
        self._server, self._thread, self._served, self.base_url = None, None, None, ""
        if self.dialog is not None:
            self.dialog.show_stopped()
        self.serving_changed.emit("")

    def close(self) -> None:
        thread = self._thread
        self.stop()
        if thread is not None:
            thread.join(timeout=3)

    def _model_name(self) -> str | None:
        return self.turns.model.name if self.turns.model is not None and self.turns.model_info is not None else None

    def _model_changed(self) -> None:
        """The server speaks for the model the window has now (503 while it loads)."""
        served = self._served
        if served is None:
            return
        info = self.turns.model_info
        if self.turns.model is None or info is None:
            served.ready.clear()
        else:
            served.id = self.turns.model.name
            served.n_ctx = info.settings.n_ctx
            served.takes_images = info.has_vision
            served.size_bytes = self.turns.model.size_bytes
            served.quantization = self.turns.model.text_format
            served.ready.set()
        if self.dialog is not None:
            self.dialog.show_model(self._model_name())
