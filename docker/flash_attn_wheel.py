"""The URL of flash-attn's prebuilt wheel for the torch installed here, or for given versions.

    python docker/flash_attn_wheel.py 2.8.3.post2          # for this interpreter's torch
    python docker/flash_attn_wheel.py 2.8.3.post2 --torch 2.13.0 --cuda 12.8 --python cp312

flash-attn's setup.py names its release wheels `flash_attn-{version}+cu{CUDA major}torch{torch
major.minor}cxx11abi{TRUE|FALSE}-{cp}-{cp}-linux_x86_64.whl` under the release tag `v{version}`
(get_wheel_url in Dao-AILab/flash-attention's setup.py, 2.8.3). A release publishes wheels only for
the torch versions of its build matrix: where this URL does not exist, build from source, bounded
(docker/Dockerfile does both, in that order).
"""

from __future__ import annotations

import argparse
import sys

RELEASES = "https://github.com/Dao-AILab/flash-attention/releases/download"


def wheel_url(version: str, torch_version: str, cuda_version: str, cxx11_abi: bool, python: str) -> str:
    torch_major_minor = ".".join(torch_version.split("+")[0].split(".")[:2])
    cuda_major = cuda_version.split(".")[0]
    name = (
        f"flash_attn-{version}+cu{cuda_major}torch{torch_major_minor}cxx11abi{str(cxx11_abi).upper()}"
        f"-{python}-{python}-linux_x86_64.whl"
    )
    return f"{RELEASES}/v{version}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("version", help="flash-attn's version, e.g. 2.8.3.post2")
    parser.add_argument("--torch", help="torch's version (default: the installed torch)")
    parser.add_argument("--cuda", help="the CUDA torch was built with (default: the installed torch's)")
    parser.add_argument("--python", default=f"cp{sys.version_info.major}{sys.version_info.minor}")
    parser.add_argument("--cxx11-abi", choices=["TRUE", "FALSE"], help="default: the installed torch's")
    args = parser.parse_args()
    if not (args.torch and args.cuda and args.cxx11_abi):
        import torch  # only to read what is not given

        args.torch = args.torch or torch.__version__
        args.cuda = args.cuda or torch.version.cuda
        args.cxx11_abi = args.cxx11_abi or str(bool(torch._C._GLIBCXX_USE_CXX11_ABI)).upper()
    print(wheel_url(args.version, args.torch, args.cuda, args.cxx11_abi == "TRUE", args.python))


if __name__ == "__main__":
    main()
