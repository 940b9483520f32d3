"""Patches of upstream libraries, each with the reason and the condition for removing it.

Applied only for the runs that need them, never at import time: by fit(), and for
bitsandbytes by `train` and each rank before peft is imported.
"""

from __future__ import annotations

import functools


def enable_fsdp_on_cpu() -> None:
    """Let accelerate run FSDP2 over gloo on CPU-only machines.

    accelerate 1.15 (`AcceleratorState.__init__`, accelerate/state.py) switches to
    DistributedType.FSDP only for accelerator device types; on the CPU it keeps
    MULTI_CPU and drops the FSDP plugin, so `sharding=fsdp` silently trained as plain
    DDP. torch's `fully_shard` itself works on CPU device meshes (measured here: 2-rank
    FSDP2 and 2x2 HSDP over gloo train and checkpoint). Remove once accelerate
    includes MULTI_CPU in that branch.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType
    from torch.distributed.fsdp import CPUOffloadPolicy

    original = AcceleratorState.__init__
    if getattr(original, "_hydratune_cpu_fsdp", False):
        return

    @functools.wraps(original)
    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            # Every later AcceleratorState() copies the process state's type over its own (TRL's GRPO
            # seeds through one before preparing the model): the process state must say FSDP too.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            if isinstance(fsdp_plugin.cpu_offload, CPUOffloadPolicy):
                # pinned host memory needs an accelerator; the offload path itself runs unpinned
                fsdp_plugin.cpu_offload = CPUOffloadPolicy(pin_memory=False)

    init._hydratune_cpu_fsdp = True
    AcceleratorState.__init__ = init


def import_deepspeed_only_when_used() -> None:
    """Keep accelerate from importing DeepSpeed, and MLflow through it, in runs that do not use
    it: a tiny LoRA run's process took 20-21 s of CPU with this, 24-26 s without, on the 2-core
    CPU machine.

    accelerate 1.x's `extract_model_from_parallel` (accelerate/utils/other.py), which the
    Trainer calls while it is built and again at save, imports DeepSpeed whenever it is
    installed, only to test whether the model is a `DeepSpeedEngine`. No object is one unless
    DeepSpeed was imported, so the test asks whether it was; a DeepSpeed run imports it first
    (fit() initializes it before the Trainer exists) and is unchanged. Remove once accelerate
    checks `sys.modules` itself.
    """
    import sys

    import accelerate.utils.other as other

    other.is_deepspeed_available = lambda: "deepspeed" in sys.modules


def leave_bitsandbytes_unimported(spec) -> None:
    """Runs that neither quantize (method.weights=qlora) nor use the 8-bit optimizer never import
    bitsandbytes. peft imports it whenever it is installed, and bitsandbytes 0.50 wraps its
    kernels in torch.compile as it is imported, which imports the inductor: 2.0 s of a tiny LoRA
    run's 12.8 s of imports (`python -X importtime`), in every process and every rank.

    Marked absent in sys.modules, it is unavailable to peft and transformers, as on a machine
    without it. Applied before peft is imported, by a process that runs one job (not a Hydra
    multirun, whose later jobs may quantize). Remove once bitsandbytes compiles lazily.
    """
    import sys

    if (
        spec.method.weights == "qlora"
        or spec.optim.name == "adamw_8bit"
        or "peft" in sys.modules
        or "bitsandbytes" in sys.modules
    ):
        return
    sys.modules["bitsandbytes"] = None  # `import bitsandbytes` raises ImportError; find_spec says None
