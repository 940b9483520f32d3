"""`train.compile`: torch.compile of the training forward and backward, in place.

`layers` compiles each decoder layer (regional compilation, as torchtune and accelerate
do): the layers run the same code on parameters dynamo treats as inputs, so they share
one graph and compiling costs one layer's time whatever the depth. `model` compiles the
decoder stack (embeddings through the final norm) as one graph. The LM head and the loss
stay eager: the chunked loss runs its chunk loop in Python, and the head's call is where it
takes over.

Modules are compiled in place (`nn.Module.compile`): their classes, parameter names and
state dicts are unchanged, so FSDP2 wraps the same layers, checkpoints resume and exports
read the weights as uncompiled. Generation (GRPO's sampling) runs eagerly: with a KV cache
the layers would recompile per layer and per length (`eager_generation`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from hydratune.config.problems import ConfigError, Problem


def compile_in_place(model, mode: str, layer_class: str) -> list[torch.nn.Module]:
    """Compile `model`'s decoder layers (`layers`) or decoder stack (`model`); the compiled modules."""
    if mode == "off":
        return []
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if mode == "model":
        targets = [causal_lm.base_model]
    else:
        targets = [m for m in causal_lm.modules() if type(m).__name__ == layer_class]
        if not targets:
            raise ConfigError(
                [
                    Problem(
                        "train.compile=layers",
                        f"{type(causal_lm).__name__} names no decoder layer class (_no_split_modules) to compile",
                        "use train.compile=model or off",
                    )
                ]
            )
    for module in targets:
        module.compile()
    return targets


def compiled(model) -> bool:
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


@contextmanager
def eager_generation(model) -> Iterator[None]:
    """Compiled modules run their eager code inside (a no-op for a model with none)."""
    if not compiled(model):
        yield
        return
    with torch.compiler.set_stance("force_eager"):
        yield


def compile_record(mode: str, modules: list[torch.nn.Module]) -> dict:
    """What train.compile did, for run.json: the modules compiled and the distinct graphs dynamo
    made in this process (for `layers`, one per mode, training or held-out, that all layers
    share; 0 means nothing was compiled)."""
    from torch._dynamo.utils import counters

    return {"mode": mode, "modules": len(modules), "graphs": int(counters["stats"]["unique_graphs"])}
