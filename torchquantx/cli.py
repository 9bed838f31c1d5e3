"""Command line of torchquantx: `python -m torchquantx <command>` (or `./tqx <command>` in the source tree).

    torchquantx quantize resnet18 --data images/ --out resnet18_int8.pt
    torchquantx analyze fashion-resnet --report report.html
    torchquantx export model.pt --data calib.pt --onnx model.onnx --trt-cache model.cache
    torchquantx bench resnet18 --batch 1 --threads 1 2

A problem with the command line's inputs (an unknown model, a missing data folder, a bad tensor
file, an output folder that does not exist) is printed as one message saying what to do, with exit
code 2; outputs are written to a temporary name and renamed, so a failed run leaves no partial file.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import io
import json
import math
import os
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

COMMANDS = {
    "quantize": "model (.pt, torchvision name, fashion-resnet/mobilenet) -> calibrated int8 TorchScript file",
    "analyze": "per-layer error, float ops and sensitivity of the int8 model; --report out.html",
    "export": "calibrated qparams -> ONNX (QuantizeLinear/DequantizeLinear), TensorRT cache, JSON",
    "bench": "latency of fp32 (optimize_for_inference) vs int8",
    "demo": "train, calibrate and quantize a Fashion-MNIST model; print fp32 vs int8",
    "info": "versions and CPU features",
}
REFERENCE_MODELS = {"fashion-resnet": "resnet", "fashion-mobilenet": "mobilenet"}
DATA_KEYWORDS = ("fashion-mnist", "random")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Input sizes (C, H, W) of torchvision models whose default is not 3x224x224.
TORCHVISION_INPUT = {"inception_v3": (3, 299, 299)}


class UsageError(Exception):
    """A problem with the command's inputs: printed as one line (no traceback), exit code 2."""


# ---------------------------------------------------------------------------------------------
# Models


@dataclass
class Model:
    module: Any                                   # nn.Module in eval mode, or a ScriptModule
    name: str                                     # for messages and default file names
    input_shape: Optional[Tuple[int, ...]]        # one sample's shape (C, H, W) when known
    default_data: Optional[str] = None            # --data when not given ("fashion-mnist" for the references)


def _torchvision_names() -> List[str]:
    import torchvision.models as tvm
    return sorted(tvm.list_models(module=tvm))


def load_model(spec: str, weights: Optional[str] = None) -> Model:
    """A .pt file (TorchScript or a torch.save'd nn.Module), a torchvision classification model name or
    fashion-resnet / fashion-mobilenet, in eval mode; `weights` is a state_dict file for a named model."""
    if spec in REFERENCE_MODELS:
        from .models import load_reference
        module = load_reference(REFERENCE_MODELS[spec], pretrained=weights is None)
        if weights is not None:
            _load_weights(module, weights, spec)
        return Model(module.eval(), spec, (1, 28, 28), "fashion-mnist")
    looks_like_file = os.path.exists(spec) or os.sep in spec or spec.endswith((".pt", ".pth", ".ptl", ".pkl"))
    if looks_like_file:
        if weights is not None:
            raise UsageError(f"--weights applies to a model given by name, but {spec!r} is a file; put the weights "
                             "in the file, or name the architecture (e.g. resnet18) and pass --weights")
        return _load_model_file(spec)
    names = _torchvision_names()
    if spec not in names:
        close = difflib.get_close_matches(spec, names + list(REFERENCE_MODELS), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown model {spec!r}; {hint}Give a .pt file (TorchScript or a torch.save'd nn.Module), "
                         f"a torchvision classification model name ({len(names)} of them, e.g. resnet18, "
                         f"mobilenet_v2) or one of {', '.join(REFERENCE_MODELS)}")
    import torchvision
    module = torchvision.models.get_model(spec, weights=None)
    if weights is not None:
        _load_weights(module, weights, spec)
    return Model(module.eval(), spec, TORCHVISION_INPUT.get(spec, (3, 224, 224)))


def _load_weights(module: Any, path: str, name: str) -> None:
    import torch
    if not os.path.isfile(path):
        raise UsageError(f"--weights {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as e:
        raise UsageError(f"--weights {path}: torch.load could not read it ({_first_line(e)})") from e
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights {path}: expected a state_dict (dict of tensors), got {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise UsageError(f"--weights {path} does not fit {name}: {_first_lines(e, 4)}") from e


def _load_model_file(path: str) -> Model:
    import torch
    name = os.path.splitext(os.path.basename(path))[0]
    if not os.path.isfile(path):
        raise UsageError(f"model file {path} does not exist" if not os.path.exists(path) else
                         f"model {path} is a folder; give a .pt file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"model file {path} is not readable (check its permissions)")
    try:
        return Model(torch.jit.load(path, map_location="cpu").eval(), name, None)
    except RuntimeError as e:
        jit_error = _first_line(e)
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:
        hint = (" (the pickled model's class must be importable: run from its project, or save the model with "
                "torch.jit.save(torch.jit.script(model), path))") if isinstance(e, (AttributeError, ImportError)) else ""
        raise UsageError(f"cannot load model file {path}: not TorchScript ({jit_error}) and torch.load failed: "
                         f"{_first_line(e)}{hint}") from e
    if isinstance(obj, torch.nn.Module):
        return Model(obj.eval(), name, None)
    if isinstance(obj, dict):
        raise UsageError(f"{path} holds a state_dict ({len(obj)} entries), not a model: pass the architecture's name "
                         f"(e.g. resnet18) and --weights {path}")
    raise UsageError(f"{path} holds a {type(obj).__name__}, not a model (expected TorchScript or an nn.Module)")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _first_lines(e: BaseException, n: int) -> str:
    return " ".join(str(e).strip().splitlines()[:n])


# ---------------------------------------------------------------------------------------------
# Data


def _parse_ints(flag: str, text: str) -> Tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{flag} should be positive integers like 224 or 3,224,224, got {text!r}")
    return values


def _parse_floats(flag: str, text: Optional[str]) -> Optional[Tuple[float, ...]]:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} should be numbers separated by commas like 0.485,0.456,0.406, got {text!r}") from None


def input_shape(model: Model, flag: Optional[str]) -> Optional[Tuple[int, ...]]:
    """One sample's shape: --input-size (H, H,W or C,H,W; channels from the model when not given) or the model's own."""
    if flag is None:
        return model.input_shape
    size = _parse_ints("--input-size", flag)
    channels = model.input_shape[0] if model.input_shape else 3
    if len(size) == 1:
        return (channels, size[0], size[0])
    if len(size) == 2:
        return (channels,) + size
    return size


class ImageBatches:
    """Batches of images from a folder (ImageFolder layout, one sub-folder per class, or a flat folder), read
    lazily: the shorter side resized to `resize`, centre-cropped to H x W, scaled to [0, 1] and normalised."""

    def __init__(self, root: str, shape: Tuple[int, ...], batch_size: int, limit: int, resize: Optional[int],
                 mean: Optional[Tuple[float, ...]], std: Optional[Tuple[float, ...]]) -> None:
        if len(shape) != 3 or shape[0] not in (1, 3):
            raise UsageError(f"images give 1 (grey) or 3 (RGB) x H x W inputs; the input size is {shape} (set "
                             "--input-size C,H,W)")
        if not os.access(root, os.R_OK | os.X_OK):
            raise UsageError(f"data folder {root} is not readable (check its permissions)")
        files = []
        for folder, dirs, names in os.walk(root, onerror=self._walk_error):
            dirs.sort()
            files += [os.path.join(folder, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise UsageError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in data folder {root}; put them in it "
                             "directly or in one sub-folder per class")
        random.Random(0).shuffle(files)          # every class among the first batches
        self.files = files[:limit]
        self.channels, self.size = shape[0], shape[1:]
        self.resize = resize or min(self.size)
        self.batch_size = batch_size
        default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if self.channels == 3 else _fashion_stats()
        self.mean, self.std = mean or default_mean, std or default_std
        for flag, values in (("--mean", self.mean), ("--std", self.std)):
            if len(values) not in (1, self.channels):
                raise UsageError(f"{flag} should have 1 or {self.channels} values, got {len(values)}")
        if any(s <= 0 for s in self.std):
            raise UsageError(f"--std values should be > 0, got {self.std}")

    @staticmethod
    def _walk_error(e: OSError) -> None:
        raise UsageError(f"cannot read data folder {e.filename}: {e.strerror}")

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        import torch
        for i in range(0, len(self.files), self.batch_size):
            yield torch.stack([self._load(f) for f in self.files[i:i + self.batch_size]])

    def _load(self, path: str) -> Any:
        from PIL import Image, UnidentifiedImageError
        import torchvision.transforms.functional as F
        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
        except (OSError, UnidentifiedImageError) as e:
            raise UsageError(f"cannot read image {path}: {e}; remove it from the data folder") from e
        img = F.center_crop(F.resize(img, self.resize), list(self.size))
        return F.normalize(F.to_tensor(img), list(self.mean), list(self.std))


def _fashion_stats() -> Tuple[Tuple[float], Tuple[float]]:
    from .data import MEAN, STD
    return (MEAN,), (STD,)


def load_tensor_batches(path: str, batch_size: int) -> List[Any]:
    """Batches from a torch.save'd float tensor (N x ..., split into batches) or list of batch tensors."""
    import torch
    if not os.access(path, os.R_OK):
        raise UsageError(f"tensor file {path} is not readable (check its permissions)")
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:
        raise UsageError(f"cannot read tensor file {path} with torch.load: {_first_line(e)}; save calibration data "
                         "with torch.save(images, path) (a float tensor N x C x H x W or a list of batches)") from e
    if isinstance(obj, torch.Tensor):
        if obj.dim() < 2:
            raise UsageError(f"tensor file {path} holds a {obj.dim()}-d tensor of shape {tuple(obj.shape)}; expected "
                             "N x C x H x W (or N x features): the first dimension indexes samples")
        batches = list(obj.split(batch_size))
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(t, torch.Tensor) for t in obj):
        batches = list(obj)
    else:
        what = type(obj).__name__ if not isinstance(obj, (list, tuple)) else \
            f"{type(obj).__name__} of {sorted({type(t).__name__ for t in obj}) or 'nothing'}"
        raise UsageError(f"tensor file {path} holds a {what}; expected a float tensor N x C x H x W or a non-empty "
                         "list of batch tensors")
    for i, t in enumerate(batches):
        if not t.is_floating_point():
            raise UsageError(f"tensor file {path}: batch {i} is {t.dtype}; calibration data should be float, "
                             "normalised as the model expects (e.g. images.float().div(255), then normalise)")
        if t.numel() == 0:
            raise UsageError(f"tensor file {path}: batch {i} is empty (shape {tuple(t.shape)})")
    return batches


def load_data(spec: Optional[str], model: Model, args: argparse.Namespace) -> Any:
    """Calibration batches (an iterable of input tensors) from --data: an image folder, a tensor file,
    fashion-mnist or random."""
    import torch
    spec = spec or model.default_data
    if spec is None:
        raise UsageError("--data is needed to calibrate: an image folder, a tensor file (torch.save'd N x C x H x W "
                         "float tensor or list of batches), 'fashion-mnist', or 'random' (smoke tests only)")
    shape = input_shape(model, args.input_size)
    count = args.batch_size * args.num_batches
    if spec == "fashion-mnist":
        from .data import DEFAULT_FASHION_MNIST_DIR, calibration_subset
        try:
            images = calibration_subset(min(count, 60000), seed=0, root=DEFAULT_FASHION_MNIST_DIR)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from e
        return list(images.split(args.batch_size))
    if spec == "random":
        if shape is None:
            raise UsageError("--data random needs --input-size (C,H,W) for a model loaded from a file")
        gen = torch.Generator().manual_seed(0)
        return [torch.randn(args.batch_size, *shape, generator=gen) for _ in range(args.num_batches)]
    if os.path.isdir(spec):
        if shape is None:
            raise UsageError(f"--input-size C,H,W is needed to read images from {spec} for a model loaded from a file")
        resize = _parse_ints("--resize", args.resize)[0] if args.resize else None
        return ImageBatches(spec, shape, args.batch_size, count, resize, _parse_floats("--mean", args.mean),
                            _parse_floats("--std", args.std))
    if os.path.isfile(spec):
        return load_tensor_batches(spec, args.batch_size)
    raise UsageError(f"--data {spec}: no such file or folder (give an image folder, a tensor file, "
                     f"{' or '.join(DATA_KEYWORDS)})")


def _first_batch(data: Any) -> Any:
    for batch in data:
        return batch
    raise UsageError("the calibration data holds no batches")


# ---------------------------------------------------------------------------------------------
# Quantization shared by quantize, analyze, export and bench


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a .pt file (TorchScript, or a torch.save'd nn.Module), a torchvision model name "
                                 "(random weights unless --weights) or fashion-resnet / fashion-mobilenet")
    p.add_argument("--weights", help="state_dict file for a model given by name")
    p.add_argument("--input-size", help="one sample's size: H, H,W or C,H,W (default: the model's, e.g. 3,224,224)")


def _add_data_args(p: argparse.ArgumentParser, num_batches: int, batch_size: int) -> None:
    g = p.add_argument_group("calibration data")
    g.add_argument("--data", help="an image folder (one sub-folder per class, or flat), a tensor file (torch.save'd "
                                  "float N x C x H x W or list of batches), 'fashion-mnist' (default for the "
                                  "fashion models) or 'random' (smoke tests only)")
    g.add_argument("--num-batches", type=int, default=num_batches, help=f"batches to read (default {num_batches})")
    g.add_argument("--batch-size", type=int, default=batch_size, help=f"images per batch (default {batch_size})")
    g.add_argument("--resize", help="images: resize the shorter side to this, then centre-crop to the input size "
                                    "(default: the input size; 256 for ImageNet-style 224 crops)")
    g.add_argument("--mean", help="images: normalisation mean per channel (default ImageNet's for RGB, "
                                  "Fashion-MNIST's for grey)")
    g.add_argument("--std", help="images: normalisation standard deviation per channel")


def _add_preset_args(g: Any) -> None:
    from .observers import METHODS
    from .quantize import QCONFIGS
    g.add_argument("--qconfig", default="x86", choices=QCONFIGS, help="preset (default x86)")
    g.add_argument("--method", choices=METHODS, help="activation range method (default minmax; mse with --recipe)")


def _add_quant_args(p: argparse.ArgumentParser, load_flags: Tuple[str, str] = ("--qparams", "--trt-cache")) -> None:
    """Preset, method, skipped modules and the flags that read ranges instead of calibrating (`export` spells them
    --from-qparams / --from-trt-cache: its --qparams / --trt-cache name outputs)."""
    g = p.add_argument_group("quantization")
    _add_preset_args(g)
    g.add_argument("--skip", action="append", default=[], metavar="NAME",
                   help="module whose ops stay in float (repeat, or separate with commas)")
    g.add_argument(load_flags[0], dest="load_qparams", metavar="IN.json",
                   help="read the activation qparams from this JSON (torchquantx export --qparams) instead of "
                        "calibrating")
    g.add_argument(load_flags[1], dest="load_trt_cache", metavar="IN.cache",
                   help="read activation ranges from this TensorRT calibration cache instead of calibrating")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(load_flags=load_flags)


def _check_counts(args: argparse.Namespace) -> None:
    for flag in ("num_batches", "batch_size"):
        value = getattr(args, flag)
        if value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} should be >= 1, got {value}")


def _check_output(flag: str, path: Optional[str]) -> None:
    """Fails before any work when an output could not be written."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: folder {folder} is not writable")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a folder; give a file name")


def _check_input(flag: str, path: Optional[str]) -> None:
    if path is not None and not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: no such file")


def _skip_list(args: argparse.Namespace) -> List[str]:
    return [s.strip() for item in args.skip for s in item.split(",") if s.strip()]


def _export_fn(name: str) -> Callable[..., Any]:
    try:
        from . import export
    except ImportError as e:
        raise UsageError(f"this torchquantx has no torchquantx.export module ({e}); {name} needs it") from e
    fn = getattr(export, name, None)
    if fn is None:
        raise UsageError(f"this torchquantx's torchquantx.export has no {name}()")
    return fn


def _prepare(model: Model, args: argparse.Namespace, example: Callable[[], Any]) -> Any:
    """tqx.prepare, tracing with one batch when torch.jit.script cannot compile the model."""
    import torchquantx as tqx
    kwargs = dict(skip=_skip_list(args), method=args.method)
    try:
        return tqx.prepare(model.module, args.qconfig, **kwargs)
    except RuntimeError as e:
        if "could not compile" not in str(e):
            raise
        print(f"torchquantx: torch.jit.script could not compile {model.name}; tracing it with one input batch "
              "instead (data-dependent control flow follows that batch)", file=sys.stderr)
        return tqx.prepare(model.module, args.qconfig, example_inputs=(example(),), **kwargs)


def check_fits(model: Model, data: Any) -> None:
    """Runs one sample of the first batch through the float model, so that data of the wrong shape is a clear
    error before any quantization work (and before a prepared model sees it: a mismatched input crashed the
    TorchScript interpreter's error path on a prepared resnet18)."""
    import torch
    batch = _first_batch(data)
    try:
        with torch.no_grad():
            model.module(batch[:1])
    except Exception as e:
        raise UsageError(f"the data does not fit the model: a batch of shape {tuple(batch.shape)} fails in "
                         f"{model.name} ({_first_line(_innermost(e))}); check --input-size, --resize and the tensor "
                         "file's shape") from e


def _innermost(e: BaseException) -> BaseException:
    """TorchScript errors end with the message of the op that failed."""
    lines = str(e).strip().splitlines()
    return RuntimeError(lines[-1]) if lines else e


def _calibrate(prepared: Any, data: Any, args: argparse.Namespace) -> None:
    import torchquantx as tqx
    try:
        tqx.calibrate(prepared, data, num_batches=args.num_batches, progress=not args.no_progress)
    except RuntimeError as e:
        if "failed inside the model" not in str(e):
            raise
        raise UsageError(f"{_first_lines(e, 3)}\nthe calibration data does not fit the model: check --input-size, "
                         "--resize and the tensor file's shape") from e
    except ValueError as e:
        if "NaN or Inf" not in str(e):
            raise
        raise UsageError(f"{e}\ncheck the calibration data for NaN / Inf values (or values that overflow in the "
                         "model)") from e


def calibrated(model: Model, args: argparse.Namespace) -> Tuple[Any, Optional[Any], str]:
    """(prepared model with activation ranges, calibration data or None, where the ranges came from)."""
    qparams_flag, trt_flag = args.load_flags
    if args.load_qparams and args.load_trt_cache:
        raise UsageError(f"give {qparams_flag} or {trt_flag}, not both")
    source = args.load_qparams or args.load_trt_cache
    _check_input(qparams_flag if args.load_qparams else trt_flag, source)
    data = None
    if source is None or args.data is not None:
        data = load_data(args.data, model, args)
        check_fits(model, data)
    shape = input_shape(model, args.input_size)

    def example() -> Any:
        if data is not None:
            return _first_batch(data)[:1]
        if shape is None:
            raise UsageError("the model needs tracing: pass --input-size C,H,W or --data")
        import torch
        return torch.zeros(1, *shape)

    prepared = _prepare(model, args, example)
    if source is None:
        _calibrate(prepared, data, args)
        return prepared, data, f"{_describe_data(args.data, model)}, {args.num_batches} batches of {args.batch_size}"
    reader = _export_fn("read_qparams_json" if args.load_qparams else "read_trt_cache")
    try:
        reader(prepared, source)
    except (ValueError, KeyError, OSError) as e:
        raise UsageError(f"cannot read activation ranges from {source}: {_first_lines(e, 3)}") from e
    return prepared, data, f"ranges read from {source} (no calibration)"


def _describe_data(spec: Optional[str], model: Model) -> str:
    spec = spec or model.default_data or "?"
    if spec in DATA_KEYWORDS:
        return spec
    return f"{'image folder' if os.path.isdir(spec) else 'tensor file'} {spec}"


def _fp32_script(model: Model, example: Optional[Any]) -> Any:
    """The float model as a ScriptModule (scripted, or traced with `example`)."""
    import torch
    from .stubs import with_torchquantx_stubs
    if isinstance(model.module, torch.jit.ScriptModule):
        return model.module
    try:
        return torch.jit.script(with_torchquantx_stubs(model.module))
    except Exception:
        if example is None:
            raise
        with torch.no_grad():
            return torch.jit.trace(with_torchquantx_stubs(model.module), (example,))


def _saved_size(module: Any) -> int:
    import torch
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.tell()


def _plan_counts(summary: str) -> Tuple[int, List[str]]:
    """(int8 ops, float op lines) of a converted model's summary."""
    int8, floats = 0, []
    for line in summary.splitlines():
        head, arrow, result = line.partition(" -> ")
        if not arrow or "aten::" not in head:
            continue                                 # fusion notes ("quantx::conv2d + quantx::add -> ...")
        if result.startswith(("quantx::", "quantized::")):
            int8 += 1
        elif result.startswith("float"):
            floats.append(line)
    return int8, floats


def _sqnr_db(ref: Any, approx: Any) -> float:
    noise = float((ref.float() - approx.float()).pow(2).sum())
    signal = float(ref.float().pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


# ---------------------------------------------------------------------------------------------
# Commands


def _parse_recipe(text: str) -> Dict[str, Any]:
    """--recipe: 'default', key=value pairs separated by commas, or a JSON file of them."""
    if text == "default":
        return {}
    if os.path.isfile(text):
        try:
            with open(text) as f:
                recipe = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"--recipe {text}: not a JSON object of recipe keys ({e})") from e
        if not isinstance(recipe, dict):
            raise UsageError(f"--recipe {text}: expected a JSON object, got {type(recipe).__name__}")
        return recipe
    recipe: Dict[str, Any] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--recipe should be 'default', key=value pairs (e.g. adaround=0,method=entropy) or a "
                             f"JSON file, got {item!r}")
        value = value.strip()
        low = value.lower()
        if low in ("1", "true", "yes", "on", "0", "false", "no", "off") and key.strip() != "adaround_iters":
            recipe[key.strip()] = low in ("1", "true", "yes", "on")
        else:
            recipe[key.strip()] = int(value) if value.isdigit() else value
    return recipe


def _quantize(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchquantx quantize",
                                description="Quantize a model to an int8 TorchScript file: prepare, calibrate, "
                                            "convert (or the tqx.ptq recovery pipeline with --recipe).")
    _add_model_args(p)
    p.add_argument("--out", help="int8 TorchScript file to write (default: <model>_int8.pt)")
    p.add_argument("--target", default="quantx", choices=["quantx", "native"],
                   help="torchquantx's int8 kernels (default; loading needs `import torchquantx`) or PyTorch's "
                        "quantized ops (loads in stock PyTorch)")
    p.add_argument("--recipe", help="run tqx.ptq (equalize, AdaRound, bias correction): 'default', key=value pairs "
                                    "such as adaround=0,method=entropy,adaround_iters=200, or a JSON file")
    _add_quant_args(p)
    _add_data_args(p, num_batches=16, batch_size=32)
    args = p.parse_args(argv)
    _check_counts(args)
    import torch
    import torchquantx as tqx

    model = load_model(args.model, args.weights)
    out = args.out or f"{model.name}_int8.pt"
    _check_output("--out", out)
    progress = not args.no_progress
    if args.recipe is not None:
        if args.load_qparams or args.load_trt_cache or _skip_list(args):
            raise UsageError("--recipe runs its own calibration and quantizes every layer: it cannot be combined "
                             "with --qparams, --trt-cache or --skip")
        recipe = _parse_recipe(args.recipe)
        if args.method is not None:
            recipe.setdefault("method", args.method)
        data = load_data(args.data, model, args)
        check_fits(model, data)
        try:
            qmodel = tqx.ptq(model.module, data, recipe, qconfig=args.qconfig, target=args.target,
                             num_batches=args.num_batches, progress=progress)
        except (TypeError, ValueError) as e:
            if "recipe" not in str(e):
                raise
            raise UsageError(f"--recipe: {_first_line(e)}") from e
        source = f"{_describe_data(args.data, model)}, {args.num_batches} batches of {args.batch_size}; recipe " \
                 f"{recipe or 'default'}"
        method = recipe.get("method", "mse")
    else:
        prepared, data, source = calibrated(model, args)
        qmodel = tqx.convert(prepared, args.target)
        method = args.method or "minmax"
    from ._files import save_atomic
    save_atomic(lambda tmp: torch.jit.save(qmodel, tmp), out)

    example = _first_batch(data)[:8] if data is not None else None
    shape = input_shape(model, args.input_size)
    if example is None and shape is not None:
        example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    fp32 = _fp32_script(model, example[:1] if example is not None else None)
    int8_ops, floats = _plan_counts(tqx.summary(qmodel, file=io.StringIO()))
    fp32_size, int8_size = _saved_size(fp32), os.path.getsize(out)
    print(f"\nquantized {model.name} -> {out}")
    print(f"  qconfig {args.qconfig}, method {method}, target {args.target}; ranges: {source}")
    print(f"  TorchScript file: fp32 {_mib(fp32_size)} -> int8 {_mib(int8_size)} ({fp32_size / int8_size:.2f}x smaller)")
    print(f"  ops: {int8_ops} int8, {len(floats)} float")
    for line in floats:
        print(f"    float: {line}")
    if example is not None:
        with torch.no_grad():
            ref, got = fp32(example), qmodel(example)
        if isinstance(ref, torch.Tensor) and isinstance(got, torch.Tensor):   # not for tuple / dict outputs
            print(f"  output SQNR vs fp32 on one {'calibration' if data is not None else 'random'} batch: "
                  f"{_sqnr_db(ref, got):.1f} dB")
    return 0


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings ('inf', '-inf', 'nan'): strict JSON has no Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _analyze(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchquantx analyze",
                                description="Where the int8 model loses accuracy: per-layer SQNR and cosine, weight- "
                                            "vs activation-only error, chosen vs observed ranges, float ops and "
                                            "their boundary cost, layers ranked by sensitivity.")
    _add_model_args(p)
    _add_preset_args(p)
    p.add_argument("--skip", action="append", default=[], metavar="NAME",
                   help="module whose ops stay in float (repeat, or separate with commas)")
    p.add_argument("--no-sensitivity", action="store_true",
                   help="skip the sensitivity ranking (two model runs per layer)")
    p.add_argument("--report", metavar="OUT.html", help="write the self-contained HTML report")
    p.add_argument("--title", help="the report's title (default: the model's name)")
    p.add_argument("--no-histograms", action="store_true", help="leave the activation histograms out of the report")
    p.add_argument("--json", metavar="OUT.json", help="write the analysis as JSON (non-finite numbers as strings)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_data_args(p, num_batches=4, batch_size=32)
    args = p.parse_args(argv)
    _check_counts(args)
    _check_output("--report", args.report)
    _check_output("--json", args.json)
    if args.report and importlib.util.find_spec("matplotlib") is None:      # checked before the analysis runs
        raise UsageError("--report draws its plots with matplotlib, which is not installed (Debian: apt-get install "
                         "python3-matplotlib; scripts/install-deps.sh installs it)")
    from . import analysis as analysis_module
    from ._files import atomic_write
    from .report import format_table, write_report
    analyze = getattr(analysis_module, "analyze", None)
    if analyze is None:
        raise UsageError("this torchquantx has no torchquantx.analysis.analyze()")
    model = load_model(args.model, args.weights)
    data = load_data(args.data, model, args)
    check_fits(model, data)
    try:
        extra = {"skip": _skip_list(args)} if _skip_list(args) else {}
        result = analyze(model.module, data, qconfig=args.qconfig, method=args.method, num_batches=args.num_batches,
                         sensitivity=not args.no_sensitivity, progress=not args.no_progress, **extra)
    except RuntimeError as e:
        if "failed inside the model" not in str(e):
            raise
        raise UsageError(f"{_first_lines(e, 3)}\nthe data does not fit the model: check --input-size, --resize and "
                         "the tensor file's shape") from e
    print(format_table(result))
    if args.json:
        text = json.dumps(_json_safe(result.to_dict()), indent=1, allow_nan=False)
        atomic_write(args.json, text.encode("utf-8"))
        print(f"wrote {args.json}")
    if args.report:
        write_report(result, args.report, title=args.title or f"torchquantx analysis: {model.name}",
                     histograms=not args.no_histograms)
        print(f"wrote {args.report}")
    return 0


def _export(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchquantx export",
                                description="Calibrate a model (or read its ranges) and write them for deployment: "
                                            "ONNX with QuantizeLinear/DequantizeLinear, a TensorRT calibration "
                                            "cache, a JSON of all qparams.")
    _add_model_args(p)
    p.add_argument("--onnx", metavar="OUT.onnx", help="ONNX model with QuantizeLinear/DequantizeLinear pairs")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    p.add_argument("--trt-cache", dest="trt_cache_out", metavar="OUT.cache",
                   help="TensorRT calibration cache (per-tensor dynamic ranges)")
    p.add_argument("--qparams", dest="qparams_out", metavar="OUT.json", help="JSON of all qparams")
    _add_quant_args(p, load_flags=("--from-qparams", "--from-trt-cache"))
    _add_data_args(p, num_batches=16, batch_size=32)
    args = p.parse_args(argv)
    _check_counts(args)
    outputs = [(flag, path) for flag, path in (("--qparams", args.qparams_out), ("--trt-cache", args.trt_cache_out),
                                              ("--onnx", args.onnx)) if path]
    if not outputs:
        raise UsageError("nothing to write: give --onnx OUT.onnx, --trt-cache OUT.cache and/or --qparams OUT.json")
    for flag, path in outputs:
        _check_output(flag, path)
    writers = {"--onnx": _export_fn("export_onnx"), "--trt-cache": _export_fn("write_trt_cache"),
               "--qparams": _export_fn("write_qparams_json")}
    model = load_model(args.model, args.weights)
    prepared, data, source = calibrated(model, args)
    shape = input_shape(model, args.input_size)
    if args.onnx:
        if data is None and shape is None:
            raise UsageError("--onnx needs an example input: pass --input-size C,H,W or --data")
        import torch
        example = _first_batch(data)[:1] if data is not None else torch.zeros(1, *shape)
    from ._files import temporary_path
    tmps: List[Tuple[str, str]] = []
    try:
        for flag, path in outputs:
            tmp = temporary_path(path)
            tmps.append((tmp, path))
            try:
                if flag == "--onnx":
                    writers[flag](prepared, tmp, (example,), opset=args.opset)
                else:
                    writers[flag](prepared, tmp)
            except (ValueError, ImportError) as e:      # what the format cannot express, or a missing package
                raise UsageError(f"cannot write {flag} {path}: {e}; nothing was written") from e
        for tmp, path in tmps:       # all written: only now replace the outputs
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    print(f"exported {model.name} (qconfig {args.qconfig}; ranges: {source}):")
    for flag, path in outputs:
        print(f"  {flag[2:]:10s}{path}")
    return 0


def _bench(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="torchquantx bench",
                                description="Latency of the fp32 model (torch.jit.optimize_for_inference) vs the "
                                            "int8 model: median of --iters runs after --warmup.")
    _add_model_args(p)
    p.add_argument("--int8", metavar="FILE.pt", help="int8 model from `torchquantx quantize` (default: quantize "
                                                     "MODEL here, calibrating on --data, random if not given)")
    p.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes to time (default 1)")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to time (default 1)")
    p.add_argument("--iters", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--target", default="quantx", choices=["quantx", "native"], help="int8 runtime when quantizing")
    _add_quant_args(p)
    _add_data_args(p, num_batches=2, batch_size=8)
    args = p.parse_args(argv)
    _check_counts(args)
    for flag, values in (("batch", args.batch), ("threads", args.threads), ("iters", [args.iters])):
        if any(v < 1 for v in values):
            raise UsageError(f"--{flag} should be >= 1, got {' '.join(map(str, values))}")
    if args.warmup < 0:
        raise UsageError(f"--warmup should be >= 0, got {args.warmup}")
    import torch
    import torchquantx as tqx
    model = load_model(args.model, args.weights)
    shape = input_shape(model, args.input_size)
    if shape is None:
        raise UsageError(f"--input-size C,H,W is needed to time {args.model}")
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(b, *shape, generator=gen) for b in args.batch]
    check_fits(model, inputs)
    if args.int8:
        _check_input("--int8", args.int8)
        try:
            qmodel = torch.jit.load(args.int8, map_location="cpu")
        except RuntimeError as e:
            raise UsageError(f"--int8 {args.int8}: not a TorchScript file ({_first_line(e)})") from e
        how = args.int8
    else:
        if args.data is None and model.default_data is None:
            args.data = "random"
        prepared, _, source = calibrated(model, args)
        qmodel = tqx.convert(prepared, args.target)
        how = f"quantized here (qconfig {args.qconfig}, target {args.target}; ranges: {source})"
    fp32 = torch.jit.optimize_for_inference(_fp32_script(model, inputs[0][:1]).eval())
    qmodel.eval()
    print(f"bench {model.name}: input N x {'x'.join(map(str, shape))}; fp32 = torch.jit.optimize_for_inference, "
          f"int8 = {how}; kernels {tqx.active_isa()}; median of {args.iters} runs after {args.warmup} warm-up")
    print(f"{'batch':>5s}  {'threads':>7s}  {'fp32 ms':>10s}  {'int8 ms':>10s}  {'speed-up':>8s}")
    before = torch.get_num_threads()
    try:
        for x in inputs:
            for threads in args.threads:
                torch.set_num_threads(threads)
                where = f"batch {x.shape[0]}, {threads} thread(s)"
                t32 = _median_ms(fp32, x, args, f"fp32, {where}")
                t8 = _median_ms(qmodel, x, args, f"int8, {where}")
                print(f"{x.shape[0]:5d}  {threads:7d}  {t32:10.3f}  {t8:10.3f}  {t32 / t8:7.2f}x")
    finally:
        torch.set_num_threads(before)
    if max(args.threads) > 1 and "OMP_WAIT_POLICY" not in os.environ:
        print("(several threads on a busy machine: OMP_WAIT_POLICY=PASSIVE in the environment keeps idle OpenMP "
              "threads from spinning, which can slow a run many times)")
    return 0


def _median_ms(module: Any, x: Any, args: argparse.Namespace, desc: str) -> float:
    import torch
    from .quantize import tqdm
    samples = []
    with torch.no_grad(), warnings.catch_warnings():
        # torch 1.13's optimize_for_inference graph reuses out= buffers across layers and warns on every resize.
        warnings.filterwarnings("ignore", message="An output with one or more elements was resized")
        for _ in range(args.warmup):
            module(x)
        runs = range(args.iters)
        if tqdm is not None:
            runs = tqdm(runs, desc=desc, unit="run", leave=False, disable=args.no_progress)
        for _ in runs:
            t = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def _info(argv: List[str]) -> int:
    argparse.ArgumentParser(prog="torchquantx info", description="Show versions and CPU features.").parse_args(argv)
    import torch
    import torchquantx
    print(f"torchquantx {torchquantx.__version__} ({torchquantx.library_path()})")
    print(f"torch {torch.__version__}, quantized engines: {', '.join(torch.backends.quantized.supported_engines)}")
    print(f"kernel ISA: detected {torchquantx.detected_isa()}, active {torchquantx.active_isa()}")
    return 0


def _demo(argv: List[str]) -> int:
    from .demo import main as demo_main
    return demo_main(argv)


HANDLERS: Dict[str, Callable[[List[str]], int]] = {
    "quantize": _quantize, "analyze": _analyze, "export": _export, "bench": _bench, "demo": _demo, "info": _info,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: torchquantx <command> [options]    (torchquantx <command> --help for its options)\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:10s}{text}")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in HANDLERS:
        close = difflib.get_close_matches(cmd, list(COMMANDS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"torchquantx: unknown command {cmd!r}{hint}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return HANDLERS[cmd](rest)
    except UsageError as e:
        print(f"torchquantx {cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchquantx {cmd}: interrupted; no output was written", file=sys.stderr)
        return 130
