"""Fail loudly when CUDA wheels (nvidia-*) were pulled into the venv on a machine without a GPU.

An unpinned torch/torchvision/pytorch-fid install resolves to the registry's newest CUDA
build (several GB). This check runs after every install and before every test run.
"""
from __future__ import annotations

import shutil
import sys
from importlib import metadata


def cuda_packages() -> list[str]:
    names = {(d.metadata["Name"] or "") for d in metadata.distributions()}
    return sorted(n for n in names if n.lower().startswith("nvidia-"))


def main() -> int:
    found = cuda_packages()
    has_gpu = shutil.which("nvidia-smi") is not None
    if found and not has_gpu:
        print(
            "ERROR: CUDA packages were installed into the virtual environment on a machine "
            f"without a GPU: {', '.join(found)}.\n"
            "Cause: torch was resolved without the pin torch==2.13.0 (the local CPU wheel).\n"
            "Fix: rm -rf .venv && make test (pyproject.toml pins torch; install torchvision/"
            "pytorch-fid together with that pin).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
