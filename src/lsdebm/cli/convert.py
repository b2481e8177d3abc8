"""``lsdebm convert``: import the authors' ``.pth`` state dicts as a safetensors checkpoint."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``convert`` subcommand."""
    p = subparsers.add_parser(
        "convert", help="import the authors' reference state dicts (.pth) into a .safetensors checkpoint",
        description="Reads plain state dicts with torch.load(weights_only=True) only and writes a checkpoint of "
                    "the reference preset; sizes are inferred from the tensor shapes. LSD-EBM: --encoder "
                    "--decoder --energy; VAE: --model (or --encoder --decoder); LEBM: --decoder --energy. "
                    "The key mapping is documented in lsdebm.convert.")
    p.add_argument("--kind", required=True, choices=["lsdebm", "vae", "lebm"], help="model kind")
    p.add_argument("--encoder", help="encoder state dict (enc_model_<ep>.pth)")
    p.add_argument("--decoder", help="decoder / generator state dict (dec_model_<ep>.pth, genmodel_<ep>.pth)")
    p.add_argument("--energy", help="energy state dict (efunc_<ep>.pth)")
    p.add_argument("--model", help="whole VAE state dict (vae_<ep>.pth)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--T", type=int, help="diffusion steps the LSD-EBM was trained with (default: reference preset, 20)")
    p.add_argument("--spacing", type=float, help="voxel spacing in mm of the model grid (default 1.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return p


def run(args) -> int:
    """Convert and print the written path."""
    from lsdebm.convert import convert_to_file
    from lsdebm.provenance import command_line

    files = {role: getattr(args, role) for role in ("encoder", "decoder", "energy", "model") if getattr(args, role)}
    out = convert_to_file(args.kind, files, args.out, overwrite=args.overwrite, spacing=args.spacing, T=args.T,
                          info={"command": command_line(getattr(args, "argv", None))})
    print(out)
    return 0
