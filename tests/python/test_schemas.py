"""Snapshot of every quantx:: operator schema and custom-class method schema.

A schema is the contract with TorchScript programs and saved models; changing one must be a
decision. After an intended change run `TQX_UPDATE_SNAPSHOTS=1 ./tqx test` and review the diff.
"""
import os

import torch

import torchquantx  # noqa: F401  (registers the operators)

SNAPSHOT = os.path.join(os.path.dirname(__file__), "snapshots", "quantx_schemas.txt")


def current_schemas():
    ops = sorted(str(s) for s in torch._C._jit_get_all_schemas() if s.name.startswith("quantx::"))
    classes = sorted(str(s) for s in torch._C._jit_get_custom_class_schemas() if "classes.quantx." in str(s))
    return ["# operators"] + ops + ["# custom classes"] + classes


def test_schemas_match_snapshot():
    now = current_schemas()
    if os.environ.get("TQX_UPDATE_SNAPSHOTS") == "1":
        with open(SNAPSHOT, "w") as f:
            f.write("\n".join(now) + "\n")
    with open(SNAPSHOT) as f:
        saved = f.read().splitlines()
    added = sorted(set(now) - set(saved))
    removed = sorted(set(saved) - set(now))
    assert not added and not removed, (
        "quantx schemas changed.\nadded:\n  " + "\n  ".join(added) + "\nremoved:\n  " + "\n  ".join(removed)
        + "\nIf intended, rerun with TQX_UPDATE_SNAPSHOTS=1 and review the diff.")


def test_schemas_are_readable_literals():
    # Every operator in the snapshot is also spelled out, literally, in the C++ sources (grep-able).
    root = os.path.join(os.path.dirname(__file__), "..", "..", "csrc")
    sources = ""
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".cpp"):
                with open(os.path.join(dirpath, name)) as f:
                    sources += f.read()
    for schema in current_schemas():
        if schema.startswith("quantx::"):
            name = schema[len("quantx::"):].split("(")[0]
            assert f'm.def("{name}(' in sources, f"schema of {name} is not a literal m.def string"
