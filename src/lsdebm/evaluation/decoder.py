"""How a checkpoint's decoder reads its own encodings of real masks: Dice, calibration, dead channels.

The decoder ends in a double convolution (ReLU) and one convolution to logits. When every channel of that
last block is zero inside the shape, every voxel inside gets the same probability, sigmoid(bias of the
last convolution): the mask (p >= 0.5) can still be right, but the probabilities carry no confidence
inside and a data term on them (``lsdebm.sampling.guidance``) pushes against a decoder that cannot move
there. Every bundled decoder trained so far does this (docs/real-anatomy.md, sessions 20-21), so a
retrained one is checked before it is bundled:

    python -m lsdebm.evaluation.decoder lsdebm-default --split val --n 24
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import torch

from lsdebm.errors import InputError, LsdebmError
from lsdebm.runtime.checkpoint import LoadedCheckpoint

#: Below this largest probability the decoder is reported as saturated (a trained decoder says ~1 inside).
SATURATED_BELOW = 0.9
#: A channel active on fewer than this share of the voxels inside the masks is dead there.
DEAD_BELOW = 0.01


@dataclass(frozen=True)
class DecoderReport:
    """Decoder read-out of ``n`` masks encoded with the encoder mean (no sampling)."""

    n: int
    autoencoder_dice: float
    largest_probability: float
    mean_inside: float
    mean_outside: float
    active_inside: tuple[float, ...]
    active_outside: tuple[float, ...]

    @property
    def dead_inside(self) -> tuple[int, ...]:
        """Channels of the decoder's last block that are zero on (nearly) every voxel inside."""
        return tuple(i for i, a in enumerate(self.active_inside) if a < DEAD_BELOW)

    @property
    def saturated(self) -> bool:
        return self.largest_probability < SATURATED_BELOW

    def summary(self) -> str:
        dead = len(self.dead_inside)
        verdict = (f"saturated: no voxel above {self.largest_probability:.4f}" if self.saturated
                   else f"calibrated: largest probability {self.largest_probability:.4f}")
        return (f"{self.n} masks: autoencoder Dice {self.autoencoder_dice:.4f}; {verdict}; mean probability "
                f"inside {self.mean_inside:.3f}, outside {self.mean_outside:.4f}; {dead} of "
                f"{len(self.active_inside)} last-block channels dead inside")


def decoder_report(checkpoint: LoadedCheckpoint, masks: torch.Tensor, batch: int = 4) -> DecoderReport:
    """Encode ``masks`` (N, 1, *grid, binary, on the checkpoint's model grid), decode the means, measure."""
    model = checkpoint.model
    if getattr(model, "encoder", None) is None or getattr(model, "decoder", None) is None:
        raise InputError(f"a {checkpoint.kind} checkpoint has no encoder to read masks with; "
                         "the decoder check takes an lsdebm or vae checkpoint")
    want = (checkpoint.config.model.grid,) * checkpoint.config.model.spatial_dims
    if masks.ndim != len(want) + 2 or tuple(masks.shape[1:]) != (1, *want) or masks.shape[0] == 0:
        raise InputError(f"masks of shape {tuple(masks.shape)}: expected (N, 1, {', '.join(map(str, want))}) "
                         "with N >= 1, on the checkpoint's model grid")
    device = next(model.parameters()).device
    seen: list[torch.Tensor] = []
    hook = model.decoder.features[-2].register_forward_hook(lambda _m, _i, out: seen.append(out > 0))
    acc = _Sums()
    try:
        with torch.no_grad():
            for lo in range(0, masks.shape[0], batch):
                x = (masks[lo:lo + batch] > 0).to(device=device, dtype=torch.float32)
                seen.clear()
                acc.add(torch.sigmoid(model.decoder(model.encoder(x)[0])), x > 0, seen[-1])
    finally:
        hook.remove()
    return acc.report(masks.shape[0])


class _Sums:
    """Running sums over batches (float64 on the CPU)."""

    def __init__(self) -> None:
        self.voxels = torch.zeros(2, dtype=torch.float64)        # inside, outside
        self.probability = torch.zeros(2, dtype=torch.float64)   # summed p inside, outside
        self.active: torch.Tensor | None = None                   # (2, channels): active voxels inside, outside
        self.dice, self.largest = 0.0, 0.0

    def add(self, p: torch.Tensor, inside: torch.Tensor, active: torch.Tensor) -> None:
        outside = ~inside
        self.voxels += torch.tensor([inside.sum().item(), outside.sum().item()], dtype=torch.float64)
        self.probability += torch.tensor([p[inside].sum().item(), p[outside].sum().item()], dtype=torch.float64)
        per_channel = torch.stack([(active & inside).sum(dim=(0, *range(2, active.ndim))),
                                   (active & outside).sum(dim=(0, *range(2, active.ndim)))]).double().cpu()
        self.active = per_channel if self.active is None else self.active + per_channel
        pred = p >= 0.5
        both = (pred & inside).flatten(1).sum(1)
        self.dice += float((2 * both / (pred.flatten(1).sum(1) + inside.flatten(1).sum(1)).clamp(min=1)).sum())
        self.largest = max(self.largest, float(p.max()))

    def report(self, n: int) -> DecoderReport:
        voxels = self.voxels.clamp(min=1)
        share = self.active / voxels[:, None]
        return DecoderReport(n, self.dice / n, self.largest, float(self.probability[0] / voxels[0]),
                             float(self.probability[1] / voxels[1]), tuple(float(v) for v in share[0]),
                             tuple(float(v) for v in share[1]))


def real_crops(checkpoint: LoadedCheckpoint, split: str = "val", n: int = 24, seed: int = 2000) -> torch.Tensor:
    """``n`` augmented crops of the bundled real masks of ``split`` in the checkpoint's model frame."""
    from lsdebm.train.data import mixed_set

    return mixed_set(None, split, n, 1.0, checkpoint.config, seed=seed, redraw=0.0).hq


def main(argv: list[str] | None = None) -> int:
    from lsdebm.runtime.checkpoint import load_checkpoint, resolve_checkpoint

    ap = argparse.ArgumentParser(prog="python -m lsdebm.evaluation.decoder", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="bundled name (lsdebm-default, vae-default) or .safetensors path")
    ap.add_argument("--split", default="val", help="bundled real split whose masks are encoded (default val)")
    ap.add_argument("--n", type=int, default=24, help="number of augmented crops (default 24)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n {args.n}: expected a number of crops >= 1")
    try:
        ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
        report = decoder_report(ckpt, real_crops(ckpt, args.split, args.n))
    except LsdebmError as exc:
        ap.exit(2, f"error: {exc}\n")
    print(json.dumps({**asdict(report), "dead_inside": list(report.dead_inside), "saturated": report.saturated})
          if args.json else report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
