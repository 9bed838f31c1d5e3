"""Reading TorchScript graphs from Python: walking blocks, module paths of nodes, the stored qconfig."""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, Tuple

import torch


def walk(block: Any, top_level: bool = True) -> Iterator[Tuple[Any, bool]]:
    """Every node of a graph or block, nested blocks included, with whether it is at the top level."""
    for node in block.nodes():
        yield node, top_level
        for sub in node.blocks():
            yield from walk(sub, False)


def module_path(node: Any) -> str:
    """'layers.0.conv1' from a node's module hierarchy 'layers(Sequential).0(BasicBlock).conv1(Conv2d).SELF(Conv2d)';
    '' for the top-level module. Functional calls inside a module end in UNKNOWN_INSTANCE, which is dropped."""
    parts = re.findall(r"([^.()]+)\([^()]*\)", node.getModuleHierarchy())
    return ".".join(p for p in parts if p not in ("SELF", "UNKNOWN_INSTANCE"))


def qconfig_fields(cpp: torch._C.ScriptModule) -> Dict[str, str]:
    """The key=value fields of the qconfig that prepare stored on the module."""
    return dict(kv.split("=", 1) for kv in str(cpp.getattr("_tqx_qconfig")).split(";") if "=" in kv)
