"""Base models: loading from the Hub, a directory or the embedded GGUF, and their chat templates."""
