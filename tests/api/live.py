"""A live server for the API tests: uvicorn on 127.0.0.1 at a free port, in a thread."""

from __future__ import annotations

import base64
import threading
import time

KEY = "sk-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "smolvlm-tiny"
FINISHED: list = []  # every turn the served engine finished, in order


class LiveServer:
    def __init__(self, app) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def data_uri(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
