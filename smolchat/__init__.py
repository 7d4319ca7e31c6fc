"""SmolChat: private image chat with SmolVLM models through llama.cpp."""

__version__ = "0.1.0"
