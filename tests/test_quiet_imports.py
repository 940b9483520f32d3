"""What every command prints before its own output: nothing from optional kernels."""

from __future__ import annotations

import subprocess
import sys


def test_bitsandbytes_missing_kernels_warning_is_silenced():
    import bitsandbytes.backends.cpu.ops as cpu_ops

    # the logger bitsandbytes warns on (on AVX512-BF16 CPUs without the `kernels` package)...
    assert cpu_ops.logger.name == "bitsandbytes.backends.cpu.ops"
    # ...prints nothing once hydratune is imported, as every console script does first
    code = (
        "import logging, hydratune; logging.getLogger('bitsandbytes.backends.cpu.ops').warning("
        "'Failed to load CPU gemm_4bit_forward from kernels-community: No module named kernels')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "kernels" not in result.stderr, result.stderr
    # the control: without hydratune the same record is printed
    bare = subprocess.run(
        [sys.executable, "-c", code.replace(", hydratune", "")], capture_output=True, text=True, timeout=120
    )
    assert "kernels-community" in bare.stderr
