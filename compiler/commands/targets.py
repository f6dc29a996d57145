"""``rnnc targets``: list the hardware targets, or show one in full.

    rnnc targets                      table of every target
    rnnc targets list --json          the same as JSON
    rnnc targets show nvidia/t4       every field of one target (a tag or a YAML path)
    rnnc targets show nvidia/t4 --json
"""

from __future__ import annotations

import argparse
import json

from rnnc import targets
from rnnc.constraints.units import fmt_bytes
from rnnc.targets.providers import Provider, get_provider, provider_tags

HELP = "list hardware targets, or show one (`rnnc targets show TAG`)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "targets",
        help=HELP,
        description="Hardware targets rnnc can tile for. Each is a YAML file in targets/ (every number "
        "cites its public source); `cpu/host` is detected from this machine; a path to your own "
        "YAML file works wherever a tag does.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="targets_command", metavar="{list,show}")
    ls = sub.add_parser("list", help="table of all targets (the default)")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = sub.add_parser("show", help="every field of one target, with its sources")
    show.add_argument("tag", help="target tag such as nvidia/h100-sxm, or a path to a target YAML file")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _row(spec: targets.HardwareSpec) -> list[str]:
    if spec.gpu is not None:
        g = spec.gpu
        arch = f"sm_{g.compute_capability[0]}{g.compute_capability[1]}"
        units = f"{g.sm_count} SMs"
        onchip = f"{fmt_bytes(g.shared_memory_per_block_optin_bytes)} smem/blk, {g.registers_per_sm // 1024}K regs/SM"
        cache = fmt_bytes(g.l2_bytes) + " L2"
    else:
        c = spec.cpu
        arch = f"{c.vector_extension} {c.vector_width_bits}b"
        units = f"{c.cores} cores"
        onchip = f"{fmt_bytes(c.l1d_bytes)} L1d, {c.vector_registers} vregs"
        cache = fmt_bytes(c.l2_bytes) + " L2/core"
    peak = spec.peak("bf16") or spec.peak("fp16") or spec.peak("fp32")
    return [spec.tag, spec.name, arch, units, onchip, cache, f"{spec.memory_bandwidth_gbs:g}", f"{peak:g}"]


def _table(rows: list[list[str]]) -> str:
    head = ["TAG", "NAME", "ARCH", "UNITS", "ON CHIP", "CACHE", "GB/s", "TFLOPS*"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.append("* dense peak of the fastest 16-bit dtype the target supports (fp32 if none)")
    return "\n".join(lines)


def _show(spec: targets.HardwareSpec) -> str:
    lines = [f"{spec.tag}: {spec.name} ({spec.vendor} {spec.architecture}, {spec.kind})"]
    mem = f"memory {spec.memory_bytes / 1e9:g} GB at {spec.memory_bandwidth_gbs:g} GB/s"
    lines.append(f"  clock {spec.clock_mhz} MHz, {mem}")
    lines.append("  dtypes: " + ", ".join(spec.dtypes))
    lines.append("  peak TFLOPS (dense): " + ", ".join(f"{k} {v:g}" for k, v in spec.peak_tflops))
    sub = spec.gpu or spec.cpu
    for key, value in sub.__dict__.items():
        if key.endswith("_bytes"):
            value = fmt_bytes(value)
        elif key == "mma_shapes":
            value = "; ".join(f"{d}: {', '.join(map(str, s))}" for d, s in value)
        elif isinstance(value, tuple):
            value = " ".join(map(str, value)) or "-"
        lines.append(f"  {key}: {value}")
    if spec.companion_cpu:
        lines.append(f"  companion CPU: {spec.companion_cpu} (what runs int8 and CPU kernels on this device)")
    lines += [f"  note: {n}" for n in spec.notes]
    lines.append("  sources:")
    lines += [f"    [{k}] {v}" for k, v in spec.sources]
    lines.append(f"  file: {spec.path}")
    return "\n".join(lines)


def _provider_dict(p: Provider) -> dict:
    return {"tag": p.tag, "name": p.name, "provider": p.provider, "checker": p.checker,
            "fixed_shapes": p.fixed_shapes, "shares_cpu": p.shares_cpu, "max_rank": p.max_rank,
            "conv_spatial_dims": list(p.conv_spatial_dims), "pad_modes": list(p.pad_modes),
            "quantization": {"format": p.quant.format, "activations": p.quant.activations, "weights": p.quant.weights},
            "ort_format": {"optimization_style": p.ort_style, "target_platform": p.ort_platform},
            "ops": "all" if p.all_ops else dict(p.ops), "file": p.path}


def _show_provider(p: Provider) -> str:
    ops = "every op of onnxruntime's CPU kernels" if p.all_ops else f"{len(p.ops)} ops"
    return "\n".join([
        f"{p.tag}: {p.name} ({p.provider}) -- rnnc export --for {p.short}",
        f"  shapes {'fixed' if p.fixed_shapes else 'dynamic'}, rank <= {p.max_rank}, conv spatial dims "
        f"{list(p.conv_spatial_dims)}, pad modes {list(p.pad_modes) or 'none'}",
        f"  int8: {p.quant.format} (activations {p.quant.activations}, weights {p.quant.weights})",
        f"  ops: {ops}" + ("" if p.all_ops else ": " + ", ".join(sorted(p.ops))),
        f"  .ort: {p.ort_style} optimization style, {p.ort_platform}; coverage by {p.checker}",
        f"  file: {p.path}"])


def run(args: argparse.Namespace) -> int:
    if getattr(args, "targets_command", None) == "show":
        if args.tag.startswith("ep/") or args.tag in [t.split("/", 1)[1] for t in provider_tags()]:
            p = get_provider(args.tag)
            print(json.dumps(_provider_dict(p), indent=2) if args.json else _show_provider(p))
            return 0
        spec = targets.get(args.tag)
        print(json.dumps(spec.to_dict(), indent=2) if args.json else _show(spec))
        return 0
    specs = [targets.get(tag) for tag in targets.list_tags()]
    providers = [get_provider(t) for t in provider_tags()]
    if args.json:
        print(json.dumps([s.to_dict() for s in specs], indent=2))  # devices; providers: `show ep/NAME --json`
    else:
        print(_table([_row(s) for s in specs]))
        print("\nexecution providers for phones and edge devices (rnnc export --for NAME; targets/providers/):")
        for p in providers:
            print(f"  {p.tag:<15} {p.name}; int8 {p.quant.format}")
    return 0
