"""Loading a user's model from the command line: ``file.py[:NAME]``, ``package.module:NAME`` or a
TorchScript file (``.jit``/``.pt``).  Shared by every subcommand that takes a MODEL argument."""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from typing import Any

from rnnc.errors import UserInputError

MODEL_HELP = ("the model: a Python file 'model.py[:NAME]' (NAME defaults to 'model'; a function or class is "
              "called with no arguments), an importable 'package.module:NAME', or a TorchScript file (.jit/.pt)")


def load_model(spec: str) -> Any:
    """Resolve a MODEL argument to an ``nn.Module`` (or TorchScript module), in eval mode."""
    import torch

    path, _, name = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    if path.endswith((".jit", ".pt", ".pth")) and os.path.exists(path):
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; models still ship as it
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(path, map_location="cpu")
        except Exception as exc:  # torch raises many types for a bad archive
            raise UserInputError(f"{path} is not a TorchScript archive torch.jit.load can read ({exc})") from None
        return model.eval()
    if path.endswith(".py"):
        if not os.path.exists(path):
            raise UserInputError(f"model file {path} does not exist")
        mod_spec = importlib.util.spec_from_file_location("rnnc_user_model", path)
        assert mod_spec and mod_spec.loader
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:
            raise UserInputError(f"running {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise UserInputError(f"cannot import {path!r} ({exc}); pass a .py file, package.module:NAME or a "
                                 f".jit file") from None
    name = name or "model"
    if not hasattr(module, name):
        raise UserInputError(f"{path} has no attribute {name!r}; name the model with {path}:NAME")
    obj = getattr(module, name)
    if not isinstance(obj, torch.nn.Module) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise UserInputError(f"calling {spec}() to build the model failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, torch.nn.Module):
        raise UserInputError(f"{spec} is a {type(obj).__name__}, not a torch.nn.Module")
    return obj.eval()


def select_submodule(model: Any, path: str | None) -> Any:
    """``model.a.b`` for ``path='a.b'``: trace one part of a bigger (e.g. stateful wrapper) model."""
    if not path:
        return model
    obj = model
    for part in path.split("."):
        if not hasattr(obj, part):
            children = ", ".join(n for n, _ in obj.named_children()) or "none"
            raise UserInputError(f"model has no submodule {path!r} ({part!r} missing; children: {children})")
        obj = getattr(obj, part)
    return obj


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,16,10' or '1x16x10' -> (1, 16, 10)."""
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise UserInputError(f"bad --input-shape {text!r}: expected integers like 1,16,40") from None
    if not dims or any(d <= 0 for d in dims):
        raise UserInputError(f"bad --input-shape {text!r}: dims must be positive")
    return dims


DTYPES = ("float32", "float16", "bfloat16", "float64", "int64")


def add_model_arguments(p: Any, *, shape_help: str = "") -> None:
    """The MODEL, --submodule, --input-shape and --dtype arguments every model command shares."""
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--submodule", metavar="PATH",
                   help="use model.PATH instead of the whole model, e.g. _model for silero_vad.jit's "
                        "stateless inner network")
    p.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                   help=shape_help or "shape of one example input, e.g. 4,32,16; repeat once per input")
    p.add_argument("--dtype", action="append", choices=DTYPES,
                   help="dtype of each input (default float32; int64 inputs are filled with small ints)")


def example_inputs(shapes: list[str], dtypes: list[str] | None) -> tuple:
    """Random example inputs (fixed seed) of the given shapes and dtypes."""
    import torch

    dtypes = dtypes or []
    if len(dtypes) > len(shapes):
        raise UserInputError(f"{len(dtypes)} --dtype values for {len(shapes)} --input-shape values")
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, text in enumerate(shapes):
        shape = parse_shape(text)
        dt = dtypes[i] if i < len(dtypes) else "float32"
        if dt == "int64":
            out.append(torch.randint(0, 2, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen).to(getattr(torch, dt)))
    return tuple(out)


def model_and_inputs(args: Any) -> tuple[Any, tuple]:
    """Load MODEL (and --submodule) and build its example inputs from the parsed arguments."""
    model = select_submodule(load_model(args.model), getattr(args, "submodule", None))
    return model, example_inputs(args.input_shape, args.dtype)
