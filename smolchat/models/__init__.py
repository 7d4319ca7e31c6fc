"""SmolVLM models: the catalog, weight formats, downloads, what is installed, memory estimates."""
