"""hydratune: a declarative, Hydra-composed LLM fine-tuning trainer.

Data flows one way: configs -> RunSpec -> preprocess -> train -> export -> evaluate.
Each stage is a plain `run_<stage>(spec)` function; the console scripts are thin
Hydra wrappers around them.
"""

__version__ = "0.1.0"


def _quiet_optional_kernel_warning() -> None:
    # On CPUs with AVX512-BF16, importing bitsandbytes tries the Hub-hosted `kernels` package for a
    # faster 4-bit CPU matmul and warns on every command when it is absent. Installing it would make
    # bitsandbytes download a kernel at import time (nothing may download at run time offline);
    # bitsandbytes' own CPU kernel is used either way, so the warning only adds noise.
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


_quiet_optional_kernel_warning()
