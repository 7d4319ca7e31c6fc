"""SmolChat's local HTTP API: OpenAI-compatible chat completions on the engine service.

``server.create_app`` builds the ASGI app around an ``EngineService`` that owns the model;
requests become turns queued on it like the window's. Everything a client sends is checked
before it reaches the engine (``messages.py``), and answered in OpenAI's error shape
(``errors.py``) when it is refused. No Qt.
"""
