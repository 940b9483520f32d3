"""The GPU install the README documents is one that can work: no extra holds a package whose
build needs torch (pip builds an extra's sdist in isolation, without torch), the documented
commands install torch first and such packages without build isolation, the extras they name
exist, and the vLLM extra pairs with the torch the README and the Dockerfile install."""

from __future__ import annotations

import configparser
import re
import sys

from .conftest import REPO

# Packages whose setup.py imports torch: inside an isolated build, torch is not there.
BUILDS_AGAINST_TORCH = {"flash-attn", "flash_attn"}


def extras() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    section = cfg["options.extras_require"]
    return {name: [line.strip() for line in section[name].splitlines() if line.strip()] for name in section}


def package(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def gpu_section() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("### On a GPU") :].split("\n## ", 1)[0]


def gpu_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", gpu_section(), re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_no_extra_holds_a_package_that_builds_against_torch():
    for name, requirements in extras().items():
        assert not {package(r) for r in requirements} & BUILDS_AGAINST_TORCH, f"extra [{name}]: {requirements}"


def test_the_documented_gpu_install_installs_torch_first_and_flash_attn_without_isolation():
    commands = gpu_commands()
    torch_from_its_index = r"torch==[\d.]+ --index-url https://download\.pytorch\.org/whl/cu\d+"
    assert re.fullmatch(r"pip install -c constraints\.txt " + torch_from_its_index, commands[0])
    installs_package = [i for i, c in enumerate(commands) if c.startswith("pip install -c constraints.txt -e ")]
    assert installs_package and installs_package[0] > 0, commands
    named = re.search(r"'\.\[([\w,]+)\]'", commands[installs_package[0]]).group(1).split(",")
    assert set(named) <= set(extras()), f"extras the README names but setup.cfg lacks: {set(named) - set(extras())}"
    for command in commands:
        if {package(word) for word in command.split()[2:]} & BUILDS_AGAINST_TORCH:
            assert "--no-build-isolation" in command or command.split()[2].endswith(".whl"), command


def test_the_vllm_extra_pairs_with_the_torch_installed():
    (pin,) = extras()["vllm"]
    vllm_version = pin.split("==")[1]
    pairings = dict(re.findall(r"^\| (\d+\.\d+\.\d+) \| (\d+\.\d+\.\d+) \|", gpu_section(), re.M))
    torch_readme = re.search(r"torch==([\d.]+)", gpu_commands()[0]).group(1)
    torch_docker = re.search(r"pip install torch==([\d.]+)", (REPO / "docker" / "Dockerfile").read_text()).group(1)
    assert pairings[vllm_version] == torch_readme == torch_docker
    assert f"vllm=={vllm_version}" in (REPO / "docker" / "Dockerfile").read_text()


def test_the_docker_flash_attn_wheel_is_named_as_its_release_names_it():
    sys.path.insert(0, str(REPO / "docker"))
    try:
        from flash_attn_wheel import wheel_url
    finally:
        sys.path.remove(str(REPO / "docker"))
    assert wheel_url("2.8.3.post2", "2.13.0+cu128", "12.8", True, "cp312") == (
        "https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3.post2/"
        "flash_attn-2.8.3.post2+cu12torch2.13cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"
    )
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    build = next(line for line in dockerfile.splitlines() if "FLASH_ATTENTION_FORCE_BUILD=TRUE" in line)
    assert "MAX_JOBS=" in build and "FLASH_ATTN_CUDA_ARCHS=" in build  # flash-attn's setup.py reads both
