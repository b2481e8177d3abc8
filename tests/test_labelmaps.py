"""Choosing the structures of a label map to refine (VerSe, TotalSegmentator, blobs, sizes)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from lsdebm.data.labelmaps import TOTALSEGMENTATOR, VERSE, describe, recognise_table, select_structures
from lsdebm.errors import InputError


def grid(spacing: float) -> np.ndarray:
    return np.diag([spacing, spacing, spacing, 1.0])


def spine_map(ids, box=(15, 20, 20), spacing=2.0, extra=None) -> np.ndarray:
    """Boxes of ``box`` voxels (30x40x40 mm at 2 mm, 48 cm3) stacked along axis 0, one per id."""
    data = np.zeros((len(ids) * (box[0] + 2) + 2, box[1] + 4, box[2] + 4), np.uint8)
    for k, label in enumerate(ids):
        z = 1 + k * (box[0] + 2)
        data[z:z + box[0], 2:2 + box[1], 2:2 + box[2]] = label
    for label, index in (extra or {}).items():
        data[index] = label
    return data


def test_tables_follow_the_published_numbering():
    assert (VERSE[1], VERSE[7], VERSE[8], VERSE[19], VERSE[20], VERSE[24], VERSE[26], VERSE[28]) == (
        "C1", "C7", "T1", "T12", "L1", "L5", "sacrum", "T13")
    assert (TOTALSEGMENTATOR[5], TOTALSEGMENTATOR[25], TOTALSEGMENTATOR[26], TOTALSEGMENTATOR[27]) == (
        "liver", "sacrum", "S1", "L5")
    assert (TOTALSEGMENTATOR[31], TOTALSEGMENTATOR[32], TOTALSEGMENTATOR[43], TOTALSEGMENTATOR[44],
            TOTALSEGMENTATOR[50], TOTALSEGMENTATOR[117]) == ("L1", "T12", "T1", "C7", "C1", "costal_cartilages")
    assert len(TOTALSEGMENTATOR) == 117


@pytest.mark.parametrize("ids, expected", [
    ({1}, "binary"), ({20, 21, 22, 23, 24, 26}, "verse"), ({18, 19, 28, 20}, "verse"),
    ({5, 27, 28, 29, 30, 31}, "totalsegmentator"), ({3, 17}, None), (set(range(1, 301)), None), (set(), None),
    ({22}, "verse"), ({31}, "totalsegmentator"),  # one vertebra, named
    ({5}, "verse"), ({100}, "binary"), ({26}, None), ({255}, None),  # one structure: never skipped for its number
    # SPINEPS / TPTBox: VerSe vertebrae with discs (100 + id), endplates (200 + id), cord and canal (60, 61)
    ({18, 19, 20, 21, 22, 23, 24, 26, 60, 61, 118, 119, 120, 121, 122, 123, 218, 224}, "verse"),
    ({20, 21, 22, 23, 24, 120, 121, 122, 123, 124}, "verse"),
    ({20, 21, 22, 23, 24, 100}, "totalsegmentator"),  # every id a TotalSegmentator class: ambiguous, documented
    ({22, 122}, None), ({5, 27, 120, 200}, None),  # one vertebra only; a 27 (TotalSegmentator's L5)
])
def test_recognise_table(ids, expected):
    assert recognise_table(ids) == expected


def test_a_mask_stored_with_another_value_is_refined_when_vertebra_sized():
    """0/100 is a plain mask: refined (it was skipped as TotalSegmentator's class 100, 'not a vertebra')."""
    data = np.zeros((70, 50, 40), np.uint8)
    data[5:65, 5:45, 5:35] = 100
    sel = select_structures(data, grid(0.5))
    assert sel.labels == [100] and sel.table == "binary" and describe(sel) == ["refining label 100"]


def test_negative_label_values_are_refined_with_a_warning():
    """A mask stored as -1 (a signed/unsigned mix-up) is refined like 1 is, but the user is told."""
    from lsdebm.errors import InputWarning

    data = np.zeros((70, 50, 40), np.int16)
    data[5:65, 5:45, 5:35] = -1
    with pytest.warns(InputWarning, match=r"negative label value\(s\) -1: .*expected non-negative label ids"):
        sel = select_structures(data, grid(0.5))
    assert sel.labels == [-1]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the usual mask gets no such warning
        select_structures(np.abs(data), grid(0.5))


def test_verse_lumbar_spine_with_sacrum_picks_l1_to_l5():
    data = spine_map([20, 21, 22, 23, 24, 26])
    sel = select_structures(data, grid(2.0))
    assert sel.table == "verse" and sel.labels == [20, 21, 22, 23, 24]
    assert [sel.levels[i] for i in sel.labels] == ["L1", "L2", "L3", "L4", "L5"]
    assert sel.skipped == [(26, "sacrum is not a vertebra in the VerSe table")]
    lines = describe(sel)
    assert "refining label 22 (L3, VerSe)" in lines
    assert lines[-1] == ("skipping label 26 (sacrum, VerSe): sacrum is not a vertebra in the VerSe table; "
                         "name it with --label 26 to refine it anyway")


def test_a_spineps_map_refines_its_vertebrae_and_not_its_discs():
    """Discs (100 + vertebra) are vertebra-sized: without the table they were refined as vertebrae."""
    data = spine_map([20, 21, 22, 23, 24, 121, 122, 123, 124, 224])
    sel = select_structures(data, grid(2.0))
    assert sel.table == "verse" and sel.labels == [20, 21, 22, 23, 24]
    assert dict(sel.skipped)[122] == "unknown label is not a vertebra in the VerSe table"


def test_a_map_read_as_the_wrong_table_says_how_to_read_it_otherwise():
    data = spine_map([20, 21, 22, 23, 24], extra={100: (0, 0, 0)})  # VerSe L1-L5 and one id read as a rib
    with pytest.raises(InputError, match="read as TotalSegmentator's; --label-table verse"):
        select_structures(data, grid(2.0))
    sel = select_structures(data, grid(2.0), table="verse")
    assert sel.labels == [20, 21, 22, 23, 24] and sel.levels[22] == "L3"


def test_totalsegmentator_map_refines_only_vertebrae():
    data = spine_map([27, 28, 29, 5, 44])  # L5, L4, L3, liver (vertebra-sized on purpose), C7
    sel = select_structures(data, grid(2.0))
    assert sel.table == "totalsegmentator" and sel.labels == [27, 28, 29, 44]
    assert [sel.levels[i] for i in sel.labels] == ["L5", "L4", "L3", "C7"]
    assert sel.skipped == [(5, "liver is not a vertebra in the TotalSegmentator table")]


def test_300_tiny_blobs_are_all_skipped_quickly():
    data = np.zeros((60, 60, 60), np.uint16)
    rng = np.random.default_rng(0)
    corners = rng.choice(29 ** 3, 300, replace=False)
    for label, c in enumerate(corners, start=1):
        z, y, x = np.unravel_index(c, (29, 29, 29))
        data[2 * z:2 * z + 2, 2 * y:2 * y + 2, 2 * x:2 * x + 2] = label  # 8 voxels
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        select_structures(data, grid(1.0))
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert "\n" not in message and "300 labels" in message and "300 far from a vertebra" in message
    assert "--label 1" in message


def test_tiny_blob_is_described_with_its_volume():
    data = spine_map([1, 2], extra={5: (0, 0, slice(0, 2))})  # 2-voxel blob: 0.016 cm3 at 2 mm
    sel = select_structures(data, grid(2.0), table="none")
    assert sel.labels == [1, 2] and sel.skipped[0][0] == 5
    assert describe(sel)[-1] == ("skipping label 5: 0.02 cm3, far from a vertebra (3-200 cm3); "
                                 "name it with --label 5 to refine it anyway")


def test_explicit_label_keeps_a_tiny_blob():
    data = np.zeros((20, 20, 20), np.uint8)
    data[2:4, 2:4, 2:4] = 7
    data[10:12, 10:12, 10:12] = 9
    sel = select_structures(data, grid(1.0), labels=[7])
    assert sel.labels == [7] and sel.skipped == [(9, "not named with --label")]
    assert describe(sel) == ["refining label 7", "skipping label 9: not named with --label"]
    with pytest.raises(InputError, match=r"^label 3 not found in the volume; labels present: \[7, 9\]$"):
        select_structures(data, grid(1.0), labels=[3])


def test_size_check_uses_the_affine():
    data = np.zeros((70, 50, 40), np.uint8)
    data[5:65, 5:45, 5:35] = 1  # 60x40x30 voxels
    assert select_structures(data, grid(0.5)).labels == [1]  # 30x20x15 mm, 9 cm3: a vertebra
    with pytest.raises(InputError, match=r"label 1 is 1.13 cm3, far from a vertebra \(3-200 cm3\); --label 1"):
        select_structures(data, grid(0.25))  # 1.1 cm3
    with pytest.raises(InputError, match="576 cm3, far from a vertebra .*several vertebrae in one label"):
        select_structures(data, grid(2.0))  # 576 cm3: a whole spine in one label, perhaps
    anisotropic = np.diag([0.5, 0.5, 4.0, 1.0])  # 30x20x120 mm: 36 cm3, extent within limits
    assert select_structures(data, anisotropic).labels == [1]
    long_thin = np.zeros((200, 6, 6), np.uint8)
    long_thin[:, 1:5, 1:5] = 1
    with pytest.raises(InputError, match="largest extent 200 mm, far from a vertebra"):
        select_structures(long_thin, np.diag([1.0, 3.0, 3.0, 1.0]))  # 28.8 cm3 but 200 mm long


def test_real_vertebra_is_kept_in_its_own_geometry():
    from lsdebm.data.real import load_real_masks

    real = load_real_masks(split="val", levels=("L3",))[0]
    sel = select_structures(real.mask, real.affine)
    assert sel.table == "binary" and sel.labels == [1] and sel.skipped == []


def test_errors_match_the_pipeline_wording():
    from lsdebm.tasks.reconstruct import structure_labels

    for bad in (np.zeros((4, 4, 4), np.uint8), np.full((4, 4, 4), 0.5, np.float32)):
        with pytest.raises(InputError) as ours:
            select_structures(bad, grid(1.0))
        with pytest.raises(InputError) as theirs:
            structure_labels(bad)
        assert str(ours.value) == str(theirs.value)


def test_unknown_table_is_refused():
    with pytest.raises(InputError, match="unknown label table 'spine'"):
        select_structures(spine_map([1, 2]), grid(2.0), table="spine")


@pytest.mark.parametrize("dtype,scale", [(np.uint8, 1), (np.int32, 1000), (np.float32, 1)])
def test_counts_and_boxes_of_every_label_match_numpy(monkeypatch, dtype, scale):
    """One (chunked) pass gives each label's voxel count and index box: what np.unique and a per-label scan give,
    for a uint8 map, large ids and a float map; chunks of 1000 voxels so that the chunking itself is exercised."""
    import lsdebm.data.label_census as census
    from lsdebm.data.frame import bounding_box

    monkeypatch.setattr(census, "BINCOUNT_CHUNK", 1000)
    rng = np.random.default_rng(4)
    data = np.zeros((30, 25, 20), dtype)
    for k, label in enumerate((3, 7, 12)):
        lo = rng.integers(0, 12, 3)
        data[lo[0]:lo[0] + 6 + k, lo[1]:lo[1] + 5, lo[2]:lo[2] + 4 + 2 * k] = label * scale
    ids, counts = np.unique(data[data != 0], return_counts=True)
    assert census.label_counts(data) == {int(i): int(c) for i, c in zip(ids, counts)}
    boxes = census.label_boxes(data, [int(i) for i in ids])
    assert boxes == {int(i): bounding_box(data == i) for i in ids}
    sizes = census.measure(data, np.diag([0.5, 0.5, 2.0, 1.0]), [int(i) for i in ids])
    assert sizes[int(ids[0])][0] == pytest.approx(counts[0] * 0.5e-3)


def test_a_whole_body_label_map_is_measured_without_an_intp_copy():
    """np.bincount casts its input to intp: 8 bytes a voxel of a whole-body map. Counting goes a chunk at a time."""
    import tracemalloc

    from lsdebm.data.label_census import label_counts

    data = np.zeros((200, 200, 250), np.uint8)  # 10 M voxels: an intp copy would be 80 MB
    data[90:110, 80:120, 100:140] = 21
    tracemalloc.start()
    counts = label_counts(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert counts == {21: 20 * 40 * 40}
    assert peak < 50e6


def test_label_table_option_of_reconstruct(tmp_path, tiny_ckpts, capsys):
    from lsdebm.cli.main import main
    from lsdebm.data.nifti import write_volume

    data = spine_map([21, 22], extra={100: (0, 0, 0)})
    src = write_volume(tmp_path / "map.nii.gz", data, grid(2.0))
    base = ["reconstruct", str(src), "-o", str(tmp_path / "out.nii.gz"), "--checkpoint", str(tiny_ckpts["vae"]),
            "--no-reconnet", "--threads", "1"]
    assert main(base) == 2
    assert "--label-table verse" in capsys.readouterr().err
    assert main([*base, "--label-table", "verse"]) == 0
    err = capsys.readouterr().err
    assert "L2" in err and "L3" in err and "not a vertebra in the VerSe table" in err, err
