"""One engine service with the tiny fixture pair behind a live server, for every API test
(random weights: the answers' words mean nothing, their shape and figures do)."""

from __future__ import annotations

import pytest

from smolchat.api.server import ServedModel, ServerOptions, create_app
from smolchat.engine import EngineSettings
from smolchat.service import EngineService, Loaded, LoadRequest, TurnFinished
from tests.api.live import FINISHED, KEY, MODEL, LiveServer


@pytest.fixture(scope="package")
def served(tiny_pair):
    service = EngineService(
        lambda e: FINISHED.append(e.result) if isinstance(e, TurnFinished) else None, thread_name="api-test-engine"
    )
    model = ServedModel(id=MODEL, n_ctx=4096, quantization="F32", size_bytes=1234)
    loading = service.stream(LoadRequest(model.id, *tiny_pair, EngineSettings(n_ctx=4096)))
    server = LiveServer(create_app(service, model, ServerOptions(api_key=KEY, max_body_bytes=8 * 2**20)))
    yield service, server, model, loading
    server.stop()
    service.close()


@pytest.fixture(scope="package")
def ready(served):
    _, server, model, loading = served
    assert isinstance(loading.wait(), Loaded)
    model.ready.set()
    return server
