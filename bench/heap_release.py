"""Make a training process's resident memory follow what its tensors hold.

On the CPU, PyTorch allocates through glibc's malloc. After the first step glibc serves
activation-sized blocks from its heap, and the forward pass's freed temporaries (LoRA's
scaled adapter outputs, QLoRA's dequantized weights) leave holes that later, differently sized
tensors do not fill: the heap stays resident. Backward does the same with its own temporaries
(QLoRA dequantizes each weight again). `install()` calls `malloc_trim(0)` after every decoder
layer's forward and backward pass, which returns those free pages to the kernel, so the peak RSS
is the peak of live memory, the quantity the plan estimates. It costs step time (each released
page is faulted in again); bench/plan_memory.py uses it to measure, training does not.
"""

from __future__ import annotations

import ctypes


def install() -> None:
    import hydratune.training.fit as fit

    libc = ctypes.CDLL("libc.so.6")
    build = fit.build_model

    def release(module, inputs, outputs):  # returns None: outputs and gradients stay as they are
        libc.malloc_trim(0)

    def build_releasing(*args, **kwargs):
        model = build(*args, **kwargs)
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
        if not layers:
            raise SystemExit("heap_release: no module named *DecoderLayer in the model")
        for layer in layers:
            layer.register_forward_hook(release)
            layer.register_full_backward_hook(release)
        return model

    fit.build_model = build_releasing
