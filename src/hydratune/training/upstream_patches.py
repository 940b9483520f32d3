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


def shard_reference_per_layer() -> None:
    """Shard the frozen reference model of DPO, KTO and GRPO layer by layer under FSDP2, as the
    policy is.

    TRL 1.16's `prepare_fsdp` (trl/models/utils.py) calls `fully_shard` on the reference model's
    root only: the whole model is one unit, so every reference forward gathers all of its weights
    on every rank (the full copy sharding should avoid, and the all-gather buffer beside it).
    Each decoder layer (accelerate's auto-wrap policy, the policy's) becomes its own unit first,
    with TRL's own arguments; the root is then sharded by TRL as before. Remove once TRL wraps
    the reference model's layers.
    """
    import trl.trainer.dpo_trainer
    import trl.trainer.grpo_trainer
    import trl.trainer.kto_trainer
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    from torch.distributed.fsdp import FSDPModule

    trainers = (trl.trainer.dpo_trainer, trl.trainer.kto_trainer, trl.trainer.grpo_trainer)
    original = trainers[0].prepare_fsdp
    if getattr(original, "_hydratune_per_layer", False):
        return

    @functools.wraps(original)
    def prepare_fsdp(model, accelerator):
        plugin = accelerator.state.fsdp_plugin
        wrap = fsdp2_prepare_auto_wrap_policy(plugin, model) if plugin.fsdp_version == 2 else None
        if wrap is not None and not isinstance(model, FSDPModule):
            for module in get_module_children_bottom_up(model)[:-1]:
                if wrap(module) and not isinstance(module, FSDPModule):
                    original(module, accelerator)
        return original(model, accelerator)

    prepare_fsdp._hydratune_per_layer = True
    for module in trainers:
        module.prepare_fsdp = prepare_fsdp


def gather_fsdp2_for_generation(reshard_after_forward: bool) -> None:
    """Gather GRPO's FSDP2 policy once around `generate`, as TRL does under ZeRO-3.

    TRL 1.16 wraps GRPO's `generate` in `DistributedBackend.summon_full_params` (trl/distributed.py),
    which gathers FSDP1's weights and does nothing for FSDP2: every new token then all-gathers
    every layer again and frees it. Each unit now stays gathered from its first forward until
    generation ends, and is sharded again after; training's forward is unchanged. Remove once
    TRL gathers FSDP2 there.
    """
    import contextlib

    from torch.distributed.fsdp import FSDPModule
    from trl.distributed import DistributedBackend

    original = DistributedBackend.summon_full_params
    if getattr(original, "_hydratune_fsdp2", False):
        return

    @contextlib.contextmanager
    @functools.wraps(original)
    def summon_full_params(self, module, **kwargs):
        if self.fsdp_version != 2:
            with original(self, module, **kwargs):
                yield
            return
        units = [m for m in module.modules() if isinstance(m, FSDPModule)]
        for unit in units:
            unit.set_reshard_after_forward(False, recurse=False)
        try:
            yield
        finally:
            for unit in units:
                unit.reshard()
                unit.set_reshard_after_forward(reshard_after_forward, recurse=False)

    summon_full_params._hydratune_fsdp2 = True
    DistributedBackend.summon_full_params = summon_full_params


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


def import_bitsandbytes_only_if_used(spec) -> None:
    """Runs that neither quantize (method.weights=qlora) nor use the 8-bit optimizer never import
    bitsandbytes; runs that do import it here, at start. bitsandbytes 0.50 wraps its kernels in
    torch.compile as it is imported, which imports the inductor: 2.0 s of a tiny LoRA run's 12.8 s
    of imports (`python -X importtime`), in every process and every rank.

    Marked absent in sys.modules, it is unavailable to peft and transformers, as on a machine
    without it. A run that uses it imports it before its memory baseline, whichever peft it has:
    peft 0.21 imports bitsandbytes with itself, peft 0.22 only when a quantized layer is wrapped,
    inside training, where the import's own modules would be counted as training memory.
    Applied before peft is imported, by a process that runs one job (not a Hydra multirun, whose
    later jobs may quantize). Remove the marking once bitsandbytes compiles lazily.
    """
    import sys

    if "peft" in sys.modules or "bitsandbytes" in sys.modules:
        return
    if spec.method.weights == "qlora" or spec.optim.name == "adamw_8bit":
        import bitsandbytes  # noqa: F401  (imported for its start-up cost only)

        return
    sys.modules["bitsandbytes"] = None  # `import bitsandbytes` raises ImportError; find_spec says None
