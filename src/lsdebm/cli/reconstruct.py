"""``lsdebm reconstruct INPUT... -o OUT``: refine vertebra masks with a trained model.

Each input (a mask or label map) is refined label by label and written with a ``.provenance.json`` sidecar
on its output grid (:mod:`lsdebm.data.grids`; a thick-slice input: isotropic at its finest spacing, unless
``--native-grid``, ``--out-spacing`` or ``--like``). ``--mesh`` also writes the surface as binary STL in world
mm. Under ``torchrun`` the inputs are split across ranks (``RANK``/``WORLD_SIZE``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from lsdebm.cli.reconstruct_files import all_or_none, check_targets, plan_outputs, probs_path
from lsdebm.cli.reconstruct_files import mesh_path as _mesh_path
from lsdebm.cli.reconstruct_files import trajectory_path as _trajectory_path
from lsdebm.data.grids import check_grid_holds, check_out_spacing, describe_grid, like_grid, output_grid
from lsdebm.errors import InputError, InputWarning
from lsdebm.review.meshfile import require_marching_cubes, world_surface, write_stl


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``reconstruct`` subcommand."""
    p = subparsers.add_parser(
        "reconstruct",
        help="refine low-quality vertebra masks (NIfTI): ReconNet (default), or LSD-EBM, VAE or LEBM after it",
        description="Crop each label around its centroid, resample to the model grid, refine (optionally after "
                    "the ReconNet stage), paste back onto the output grid (isotropic for thick-slice inputs). "
                    "OUT is a file for one input and a directory for several.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="binary mask or label map (.nii/.nii.gz)")
    p.add_argument("-o", "--out", required=True, help="output file (one input) or directory")
    p.add_argument("--method", choices=["reconnet", "lsdebm", "vae", "lebm"],
                   help="reconnet (the ReconNet stage with the measurement-aware output; the default, best on "
                        "real validation subjects) or a refinement after it: lsdebm, vae, lebm (default: the "
                        "checkpoint's kind, else reconnet)")
    p.add_argument("--checkpoint", help="bundled name or .safetensors path (default: <method>-default)")
    p.add_argument("--reconnet", action=argparse.BooleanOptionalAction, default=None,
                   help="run the ReconNet stage first (default: on when a matching ReconNet checkpoint exists)")
    p.add_argument("--reconnet-checkpoint", help="ReconNet bundled name or path (default: reconnet-default)")
    p.add_argument("--steps", type=int, help="diffusion depth t* (LSD-EBM) or posterior steps (LEBM)")
    p.add_argument("--langevin-steps", type=int, help="Langevin iterations K per reverse step")
    p.add_argument("--step-size", type=float, help="Langevin step size")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--repeats", type=int, default=1,
                   help="independent chains per structure; the mean probability is thresholded at 0.5")
    p.add_argument("--save-probs", action="store_true", help="also write <out>_probs.nii.gz (mean probability)")
    p.add_argument("--trajectory", help="save the latent trajectory (.npz; a directory for several inputs)")
    p.add_argument("--mesh", help="also write the result's surface as binary STL in world mm "
                                   "(a directory for several inputs)")
    p.add_argument("--out-spacing", type=float, metavar="MM",
                   help="write on an isotropic grid of MM mm over the input's field of view (default: the "
                        "finest input spacing when the input is anisotropic, else the input grid)")
    p.add_argument("--like", metavar="FILE", help="write on this NIfTI image's grid (not with --out-spacing)")
    p.add_argument("--native-grid", action="store_true",
                   help="keep the input's grid even when it is anisotropic (thick slices)")
    p.add_argument("--slice-axis", metavar="AXIS",
                   help="the thick-slice acquisition's slab axis: an array axis 0/1/2 or sagittal/coronal/axial "
                        "(default: found from the input's anisotropic spacing or its staircase)")
    p.add_argument("--slice-thickness", type=float, metavar="MM", help="slab thickness in mm (default: found)")
    p.add_argument("--unguided", action="store_true",
                   help="the paper's sampler: no data-consistency term, no shape interpolation, "
                        "no projection onto the observed slabs")
    p.add_argument("--consistency-weight", type=float, metavar="LAMBDA",
                   help="weight of the data-consistency term in the LSD-EBM Langevin energy (default: checkpoint)")
    p.add_argument("--projection", type=float, metavar="W",
                   help="weight 0-1 of the projection of the output onto the observed slabs (default: checkpoint)")
    p.add_argument("--slab-model", default="default", metavar="FILE",
                   help="the learned slab interpolation fused before the projection: 'default' (bundled "
                        "slabnet-default), a .safetensors file, or 'none' for the classical shape-based interpolation")
    p.add_argument("--record-every", type=int, default=1, help="keep every N-th Langevin iteration (default 1)")
    p.add_argument("--label", type=int, action="append", help="refine only this label id (repeatable)")
    p.add_argument("--label-table", choices=["auto", "verse", "totalsegmentator", "totalsegmentator_v1", "none"],
                   default="auto", help="how a label map's ids are read: auto (recognise VerSe or TotalSegmentator; "
                   "the default), one of those tables, or none (every label judged by its size alone)")
    p.add_argument("--batch-size", type=int, default=8, help="structures per batch (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    return p


def _check_grid_options(args) -> None:
    """One-line errors for conflicting or bad output-grid and mesh options (before any output)."""
    chosen = [name for name, on in (("--out-spacing", args.out_spacing is not None), ("--like", args.like),
                                    ("--native-grid", args.native_grid)) if on]
    if len(chosen) > 1:
        raise InputError(f"{' and '.join(chosen)} are mutually exclusive; choose one output grid")
    if args.out_spacing is not None:
        check_out_spacing(args.out_spacing)
    if args.mesh is not None:
        require_marching_cubes()


def _output_grid(args, volume, like, selection):
    """``(shape, affine)`` the result is written on, or None for the input grid. A ``--like`` grid that misses
    the structures to refine is refused, one that cuts them is warned about."""
    if args.native_grid:
        return None
    grid = output_grid(volume.data.shape, volume.affine, args.out_spacing, like)
    if like is not None:
        check_grid_holds(np.isin(volume.data, selection.labels), volume.affine, grid, f"--like {args.like}",
                         "an image of the same scan or subject")
    return grid


def _result_mesh(result, path: Path):
    """World-mm surface of all refined labels of ``result``; a one-line error if it is empty."""
    refined = np.isin(result.mask, result.labels)
    if not refined.any():
        raise InputError(f"{path}: the reconstruction is empty, so --mesh has no surface to write")
    return world_surface(refined, result.affine)


def _grid_rule(args, grid) -> str:
    """How the output grid was chosen, for the provenance record."""
    if grid is None:
        return "native (--native-grid)" if args.native_grid else "native (input is isotropic)"
    if args.like:
        return f"like {args.like}"
    if args.out_spacing is not None:
        return f"isotropic {args.out_spacing:g} mm (--out-spacing)"
    return "isotropic at the finest input spacing (anisotropic input)"


def consistency_overrides(args) -> dict:
    """RunSettings fields from --unguided / --consistency-weight / --consistency-steps / --projection."""
    if args.unguided:  # the paper's sampler: nothing measurement-aware
        return {"consistency_weight": 0.0, "projection": 0.0, "interpolation": 0.0}
    return {"consistency_weight": args.consistency_weight, "projection": args.projection,
            "consistency_steps": getattr(args, "consistency_steps", None)}


def _check_consistency_options(args) -> None:
    if args.unguided and (args.consistency_weight is not None or args.projection is not None):
        raise InputError("--unguided turns data consistency off; do not combine it with --consistency-weight or "
                         "--projection")
    if args.consistency_weight is not None and args.consistency_weight < 0:
        raise InputError(f"--consistency-weight {args.consistency_weight} must be >= 0")
    if args.projection is not None and not 0 <= args.projection <= 1:
        raise InputError(f"--projection {args.projection} must be between 0 and 1")


def _acquisition(args, volume):
    """The input's acquisition from --slice-axis/--slice-thickness, found, or the input grid itself."""
    from lsdebm.data.acquisition import observed_acquisition
    from lsdebm.data.real import slab_axis

    axis = args.slice_axis
    if axis is not None:
        if str(axis) in ("0", "1", "2"):
            axis = int(axis)
        elif str(axis) in ("sagittal", "coronal", "axial"):
            axis = slab_axis(volume.affine, str(axis))
        else:
            raise InputError(f"--slice-axis {axis!r}: expected 0, 1, 2, sagittal, coronal or axial")
    acq = observed_acquisition(volume.data, volume.affine, axis, args.slice_thickness)
    spacing = np.asarray(volume.spacing, float)
    coarse = int(np.argmax(spacing))
    if axis is None or spacing[coarse] <= 1.2 * spacing[acq.axis]:
        return acq
    if args.slice_thickness is None and acq.thickness_mm <= spacing[acq.axis] * (1 + 1e-6):  # nothing to refine
        warnings.warn(f"--slice-axis {args.slice_axis}: its slabs are taken as thin as its {spacing[acq.axis]:g} mm "
                      f"voxels (no thicker ones show), so the output keeps the input; axis {coarse} has "
                      f"{spacing[coarse]:g} mm voxels: the slabs are probably along it (or give --slice-thickness)",
                      stacklevel=2)
    else:  # declared across thin voxels of a thick-slice grid: refined as declared, but likely a mix-up of axes
        warnings.warn(f"--slice-axis {args.slice_axis}: {acq.thickness_mm:g} mm slabs declared along axis {acq.axis} "
                      f"({spacing[acq.axis]:g} mm voxels), but axis {coarse} has {spacing[coarse]:g} mm voxels: the "
                      "slabs are probably along it (refined as declared)", stacklevel=2)
    return acq


def _check_sampling_options(args) -> None:
    """One-line errors for bad --repeats, --record-every and sampler values (as ``lsdebm evaluate`` checks them)."""
    from lsdebm.cli.sampler_options import check_sampler_values

    if args.repeats < 1:
        raise InputError(f"--repeats {args.repeats} must be >= 1")
    if args.record_every < 1:
        raise InputError(f"--record-every {args.record_every} must be >= 1 (keep every N-th Langevin iteration)")
    check_sampler_values(args)


def _sampler_settings(args, models) -> dict:
    """RunSettings sampler fields; an option the method does not read is warned about (the ReconNet stage alone
    reads none and records none)."""
    from lsdebm.cli.sampler_options import unread, warn_unread

    if models.method is None:
        given = unread(args, ()) + ["--repeats"] * (args.repeats != 1)
        if given:
            warnings.warn(f"{', '.join(given)}: only for --method lsdebm/vae/lebm; ignored by the ReconNet stage "
                          "alone (--method reconnet)", InputWarning, stacklevel=2)
        return {} if args.unguided else {"consistency_weight": None}
    warn_unread(args, [models.method.kind], f"--method {models.method.kind}")
    return {"steps": args.steps, "K": args.langevin_steps, "step_size": args.step_size, "repeats": args.repeats}


def _planned_targets(args, mine: list[tuple[Path, Path]], n_inputs: int) -> list[Path]:
    """Every file this rank would write: outputs, sidecars and the asked-for probabilities, trajectories, meshes."""
    from lsdebm.provenance import sidecar_path

    targets = []
    for path, out in mine:
        targets += [out, sidecar_path(out)]
        if args.save_probs:
            targets.append(probs_path(out))
        traj = _trajectory_path(args.trajectory, n_inputs, path)
        if traj is not None:
            targets.append(traj)
        mesh = _mesh_path(args.mesh, n_inputs, path)
        if mesh is not None:
            targets.append(mesh)
    return targets


@contextlib.contextmanager
def _about(path: Path):
    """Errors and warnings raised while ``path`` is read or refined name it (several inputs: which one?)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # each input's warnings, even if an earlier one gave the same
            yield
    except InputError as exc:
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from exc
    finally:  # outside the recording (a warning re-emitted inside it would be recorded again), each once
        for text, category in dict.fromkeys((str(w.message), w.category) for w in caught):
            warnings.warn(text if str(path) in text else f"{path}: {text}", category, stacklevel=2)


def _read_inputs(args, mine: list[tuple[Path, Path]]) -> tuple[dict, dict, dict, object]:
    """Output grid, selected structures and acquisition of every input, read once so a bad one fails first;
    the first input's volume is kept (the one refined first: a single input is read once)."""
    from lsdebm.data.labelmaps import select_structures
    from lsdebm.data.nifti import read_volume

    like = like_grid(args.like) if args.like else None
    grids, selections, acquisitions, first = {}, {}, {}, None
    for path, _ in mine:  # read every input once up front so a bad one fails before any output
        with _about(path):
            volume = read_volume(path)
            selections[path] = select_structures(volume.data, volume.affine, args.label,
                                                 None if args.label_table == "auto" else args.label_table)
            acquisitions[path] = _acquisition(args, volume)
            grids[path] = _output_grid(args, volume, like, selections[path])
        first = volume if first is None else first
    return grids, selections, acquisitions, first


def _refine_input(args, models, settings, path: Path, volume, selection, acq, grid, n_inputs: int):
    """Report ``path``'s structures and acquisition, refine it (``volume`` None: read again): (volume, result, traj)."""
    from lsdebm.data.labelmaps import describe
    from lsdebm.data.nifti import read_volume
    from lsdebm.tasks.reconstruct import looks_at_slabs, reconstruct_volume
    from lsdebm.tasks.regrid import PARALLEL_GRID

    volume = read_volume(path) if volume is None else volume
    for line in describe(selection):
        print(f"{path}: {line}", file=sys.stderr)
    print(f"{path}: acquisition: {acq.describe()}", file=sys.stderr)
    if not acq.thick_slice and looks_at_slabs(models, settings):  # no slabs found: oblique to the grid?
        from lsdebm.data.tilted_slabs import TiltedSlabs, or_tilted

        acq = or_tilted(acq, volume.data, volume.affine)
        if isinstance(acq, TiltedSlabs):
            print(f"{path}: {acq.describe()}", file=sys.stderr)
    traj_path = _trajectory_path(args.trajectory, n_inputs, path)
    with _about(path), warnings.catch_warnings():  # the skipped structures were just listed
        warnings.filterwarnings("ignore", message="skipping label")
        result = reconstruct_volume(models, volume.data, volume.affine, selection, settings,
                                    with_probabilities=args.save_probs, batch_size=args.batch_size,
                                    record_every=args.record_every if traj_path else None,
                                    input_name=str(path), out_grid=grid, acquisition=acq)
    if (result.provenance.get("acquisition") or {}).get("refined_on") == PARALLEL_GRID:  # the job's own decision
        print(f"{path}: output grid turned against the slabs: refined on the input's grid, resampled", file=sys.stderr)
    return volume, result, traj_path


def _write_outputs(args, path: Path, out: Path, volume, result, grid, traj_path, n_inputs: int, rank: int,
                   world: int) -> None:
    """Write the result, the asked-for probabilities, mesh and trajectory, then the provenance sidecar."""
    from lsdebm.data.nifti import grid_free_header, write_volume
    from lsdebm.provenance import command_line, write_provenance

    mesh_path = _mesh_path(args.mesh, n_inputs, path)
    mesh = _result_mesh(result, path) if mesh_path else None  # built (and may fail) before any output
    header = volume.header if grid is None else grid_free_header(volume.header)  # that one describes the input grid
    with all_or_none() as written:  # a failed mesh, trajectory or sidecar takes the files before it along
        written.append(write_volume(out, result.mask, result.affine, header, overwrite=args.overwrite))
        if args.save_probs:
            written.append(write_volume(probs_path(out), result.probabilities, result.affine,
                                        overwrite=args.overwrite))
        if mesh is not None:
            written.append(write_stl(mesh_path, mesh, overwrite=args.overwrite))
        if traj_path is not None:
            written.append(result.trajectory.save(traj_path, overwrite=args.overwrite))
        prov = {**result.provenance, "command": command_line(getattr(args, "argv", None)),
                "outputs": [str(w) for w in written], "rank": rank, "world_size": world,
                "output_grid": {**result.provenance.get("output_grid", {}), "rule": _grid_rule(args, grid),
                                "affine": np.round(result.affine, 6).tolist()}}
        write_provenance(out, prov, overwrite=args.overwrite)


def run(args) -> int:
    """Validate everything first (no output on a user error), then refine and write each input."""
    from lsdebm.methods import RunSettings
    from lsdebm.runtime.device import resolve_device
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import dist_rank, set_threads, shard

    _check_sampling_options(args)
    _check_grid_options(args)
    _check_consistency_options(args)
    rank, world = dist_rank()
    inputs = [Path(p) for p in args.inputs]
    outputs = plan_outputs(inputs, Path(args.out), args.out.endswith(("/", os.sep)))
    mine = shard(list(zip(inputs, outputs)), rank, world)
    check_targets(_planned_targets(args, mine, len(inputs)), args.overwrite,
                  protected=inputs + ([Path(args.like)] if args.like else []))
    grids, selections, acquisitions, first = _read_inputs(args, mine)

    set_threads(args.threads)
    device = resolve_device(args.device, local_rank=rank if world > 1 else None)
    models = load_models(args.method, args.checkpoint, args.reconnet, args.reconnet_checkpoint, device,
                         slab=args.slab_model)
    if args.trajectory and models.method is None:
        raise InputError("--trajectory records latents, which the ReconNet stage alone has none of; choose "
                         "--method lsdebm (or vae, lebm)")
    settings = RunSettings(seed=args.seed, **{**consistency_overrides(args), **_sampler_settings(args, models)})
    for index, (path, out) in enumerate(mine, start=1):
        volume, result, traj_path = _refine_input(args, models, settings, path, first if index == 1 else None,
                                                  selections[path], acquisitions[path], grids[path], len(inputs))
        first = None  # not held while the other inputs are refined
        _write_outputs(args, path, out, volume, result, grids[path], traj_path, len(inputs), rank, world)
        grid = describe_grid(result.mask.shape, result.affine)
        kind = "input grid" if grids[path] is None else "output grid"
        print(f"[{index}/{len(mine)}] {path} -> {out} ({len(result.labels)} label(s), {kind} {grid}, "
              f"{result.refinement.seconds:.1f} s)", file=sys.stderr)
        print(out)
    return 0
