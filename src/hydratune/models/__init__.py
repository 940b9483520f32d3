"""Base models: loading from the Hub, a directory, the embedded GGUF or an earlier run, their
chat templates, and the models check of a spec."""
