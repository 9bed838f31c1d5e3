"""QAT accuracy on the Fashion-MNIST reference models (#6): fp32, PTQ and QAT fine-tuning, test-set accuracy.

From the trained checkpoint: PTQ (prepare + 16 x 32 calibration images + convert) and QAT fine-tuning
for --epochs epochs (default one: 60000 images) with the reference recipe's optimizer and augmentation
(AdamW, horizontal flips; the ResNet also random crops of the image padded by 2), the learning rate
cosine-annealed from --lr to 0; BatchNorm statistics frozen after --freeze-bn of the steps and the
activation ranges after --freeze-observer. Both int8 models are converted to the quantx target and
scored on the 10000 test images. One JSON line per model goes to --json.

    nice -n 10 python3 bench/qat_accuracy.py --models mobilenet --weight-bits 4
    nice -n 10 python3 bench/qat_accuracy.py --models resnet --weight-bits 4 --learnable
"""
from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any, Dict

import torch
import torch.nn.functional as F

import torchquantx as tqx
from torchquantx.data import fashion_mnist_loader
from torchquantx.models import load_reference, reference_names

# Random-crop padding of each reference model's training recipe (scripts/train_reference.py).
_CROP_PAD = {"mobilenet": 0, "resnet": 2}


def _augment(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    """Per image: a random horizontal flip, then a random crop of the image padded by `pad` background pixels."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad == 0:
        return x
    background = float(x.min())
    padded = F.pad(x, (pad, pad, pad, pad), value=background)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(b, x.shape[1], h, w + 2 * pad)
    x = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, x.shape[1], h, w)
    return x.gather(3, cols)


def _accuracy(model: torch.nn.Module, limit: int) -> float:
    correct = total = 0
    with torch.no_grad():
        for xb, yb in fashion_mnist_loader("test", 500, limit=limit):
            correct += (model(xb).argmax(1) == yb).sum().item()
            total += len(yb)
    return 100.0 * correct / total


def run(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    fp32 = _accuracy(load_reference(name), args.test_images)
    prepared = tqx.prepare(load_reference(name), qconfig=args.qconfig, weight_bits=args.weight_bits)
    tqx.calibrate(prepared, fashion_mnist_loader("train", 32, shuffle=True), num_batches=16, progress=False)
    ptq = _accuracy(tqx.convert(prepared), args.test_images)

    qat = tqx.prepare_qat(load_reference(name).train(), qconfig=args.qconfig, weight_bits=args.weight_bits,
                          **({"learnable": True} if args.learnable else {}))
    opt = torch.optim.AdamW(qat.parameters(), lr=args.lr, weight_decay=0.0)
    loader = fashion_mnist_loader("train", args.batch, shuffle=True, seed=args.seed, drop_last=True)
    total = args.epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
    g = torch.Generator().manual_seed(args.seed + 1)
    step, t0, running = 0, time.perf_counter(), 0.0
    for _ in range(args.epochs):
        for xb, yb in loader:
            if step == int(total * args.freeze_bn):
                tqx.freeze_bn_stats(qat)
            if step == int(total * args.freeze_observer):
                tqx.disable_observer(qat)
            loss = F.cross_entropy(qat(_augment(xb, g, _CROP_PAD[name])), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            step += 1
            if step % 50 == 0 or step == total:
                print(f"  {name} step {step}/{total} loss {running:.4f} "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
    minutes = (time.perf_counter() - t0) / 60
    qat.eval()
    qat_eval = _accuracy(qat, args.test_images)  # the simulated model, before convert
    qat_int8 = _accuracy(tqx.convert(qat), args.test_images)
    return {"model": name, "qconfig": args.qconfig, "weight_bits": args.weight_bits, "learnable": args.learnable,
            "epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed, "fp32": fp32, "ptq": ptq,
            "qat_eval": qat_eval, "qat_int8": qat_int8, "qat_minus_fp32": round(qat_int8 - fp32, 2),
            "train_minutes": round(minutes, 1), "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=reference_names(), choices=reference_names())
    p.add_argument("--qconfig", default="onednn", help="onednn: 8-bit activations (x86/fbgemm reduce them to 7)")
    p.add_argument("--weight-bits", type=int, default=4, choices=(4, 8))
    p.add_argument("--learnable", action="store_true", help="LSQ: learned activation scale and zero point")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW peak learning rate (cosine to 0)")
    p.add_argument("--freeze-bn", type=float, default=0.6, help="fraction of the steps before freeze_bn_stats")
    p.add_argument("--freeze-observer", type=float, default=0.8,
                   help="fraction of the steps before disable_observer")
    p.add_argument("--seed", type=int, default=1, help="training order and augmentation")
    p.add_argument("--test-images", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="append one JSON line per model to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        result = run(name, args)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
