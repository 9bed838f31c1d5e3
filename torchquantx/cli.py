"""Command line of torchquantx: `python -m torchquantx <command>` (or `./tqx <command>` in the source tree)."""
from __future__ import annotations

import argparse
import sys
from typing import List


def _info(argv: List[str]) -> int:
    argparse.ArgumentParser(prog="torchquantx info", description="Show versions and CPU features.").parse_args(argv)
    import torch
    import torchquantx
    print(f"torchquantx {torchquantx.__version__} ({torchquantx.library_path()})")
    print(f"torch {torch.__version__}, quantized engines: {', '.join(torch.backends.quantized.supported_engines)}")
    print(f"kernel ISA: detected {torchquantx.detected_isa()}, active {torchquantx.active_isa()}")
    return 0


def main(argv: List[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": "train, calibrate and quantize a Fashion-MNIST model; print fp32 vs int8",
                "info": "versions and CPU features"}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: torchquantx <command> [options]\n\ncommands:")
        for name, text in commands.items():
            print(f"  {name:8s}{text}")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "demo":
        from .demo import main as demo_main
        return demo_main(rest)
    if cmd == "info":
        return _info(rest)
    print(f"torchquantx: unknown command {cmd!r}; choose one of: {', '.join(commands)}", file=sys.stderr)
    return 2
