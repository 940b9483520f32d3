"""The configuration: the typed RunSpec and its builder (Hydra stops there), problems, the
machine's environment, spec.json, and the registry of "a built-in name or module:function"."""
