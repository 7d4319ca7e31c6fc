"""A server that speaks OpenAI's chat API (llama.cpp's llama-server, vLLM, Ollama's /v1,
another SmolChat) standing in for the local engine: the same messages in, the same turn
events out. No Qt."""

from smolchat.remote.client import RemoteError, RemoteModel, RemoteServer, ServerSpec, server_url
from smolchat.remote.wire import image_data_uri, wire_messages

__all__ = ["RemoteError", "RemoteModel", "RemoteServer", "ServerSpec", "image_data_uri", "server_url", "wire_messages"]
