"""The AVX-512 VNNI GEMM tiles keep their accumulators in registers (issue #4).

A tile whose accumulator array GCC puts on the stack computes the same bytes, so no output test
notices it, but each vpdpbusd then comes with a load and a store: resnet18's 7x7 residual layers
once ran 1.7x slower that way after an unrelated change in the same file. This reads the built
library's machine code (objdump, from binutils, which the compiler needs anyway) and fails on a
zmm move to or from the stack next to a vpdpbusd (within NEAR instructions: the k-loop) in the tile
functions (gemm_avx512_vnni.cpp: tile, indirect_tile, tile_run; tile_run's one copy of the
epilogue struct, before its loop, is not such a move).
"""
import platform
import re
import shutil
import subprocess

import pytest

from torchquantx import _library

TILE = re.compile(r"^[0-9a-f]+ <.*::\(anonymous namespace\)::(tile|indirect_tile|tile_run)<(\d+), (\d), (true|false)>\(")
START = re.compile(r"^[0-9a-f]+ <")
STACK_ZMM = re.compile(r"vmov\w+\s+(%zmm\d+,\S*\(%r[sb]p\)|\S*\(%r[sb]p\),%zmm\d+)")
NEAR = 3


def loop_spills(lines: list) -> list:
    """The zmm stack moves within NEAR instructions of a vpdpbusd."""
    dots = [i for i, line in enumerate(lines) if "vpdpbusd" in line]
    return [line.strip() for i, line in enumerate(lines)
            if STACK_ZMM.search(line) and any(abs(i - d) <= NEAR for d in dots)]


def tile_functions(disassembly: str) -> dict:
    """{'tile<6, 4, true>': [instruction lines], ...} for the tile functions in objdump -d -C output."""
    functions, name = {}, None
    for line in disassembly.splitlines():
        if START.match(line):
            m = TILE.match(line)
            name = f"{m.group(1)}<{m.group(2)}, {m.group(3)}, {m.group(4)}>" if m else None
            if name is not None:
                functions[name] = []
        elif name is not None and line.strip():
            functions[name].append(line)
    return functions


def test_the_pattern_finds_a_spill():
    # The checker itself: a made-up function with one zmm spill and one reload.
    text = "\n".join([
        "0000000000001000 <void tqx::kernels::(anonymous namespace)::tile<6, 4, true>(long, long)>:",
        "  0ff0:\tvmovdqu64 %zmm0,-0x80(%rbp)",
        "  0ff8:\tnop",
        "  0ff9:\tnop",
        "  0ffa:\tnop",
        "  1000:\tvpdpbusd %zmm1,%zmm2,%zmm3",
        "  1006:\tvmovdqa64 %zmm3,0x40(%rsp)",
        "  100e:\tvmovdqa64 0x80(%rsp),%zmm4",
        "0000000000002000 <other()>:",
        "  2000:\tvmovdqa64 %zmm3,0x40(%rsp)",
    ])
    functions = tile_functions(text)
    assert list(functions) == ["tile<6, 4, true>"]
    assert len([l for l in functions["tile<6, 4, true>"] if STACK_ZMM.search(l)]) == 3
    assert loop_spills(functions["tile<6, 4, true>"]) == ["1006:\tvmovdqa64 %zmm3,0x40(%rsp)",
                                                          "100e:\tvmovdqa64 0x80(%rsp),%zmm4"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels only")
def test_avx512_vnni_tiles_keep_accumulators_in_registers():
    objdump = shutil.which("objdump")
    assert objdump is not None, "objdump (binutils) is needed to read the library's machine code"
    out = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", _library.library_path()], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    functions = tile_functions(out)
    # 38 row and block shapes (12 rows for 1 and 2 blocks, 8 for 3, 6 for 4), with and without a
    # residual, for each of the three function templates.
    assert len(functions) >= 3 * 2 * 38, f"found only {len(functions)} tile functions: {sorted(functions)[:5]}"
    spilling = {name: loop_spills(lines) for name, lines in functions.items()}
    spilling = {name: moves for name, moves in spilling.items() if moves}
    assert not spilling, "tiles with zmm stack moves (accumulators out of registers): " + "; ".join(
        f"{name}: {len(moves)} moves, e.g. {moves[0]}" for name, moves in sorted(spilling.items()))
