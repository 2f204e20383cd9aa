#!/usr/bin/env python3
"""DICOM in and out of segvol-rs, checked against independent tools (run by .ci/run).

- Series written by pydicom from the development NIfTIs (make_series.py: axial, oblique,
  shuffled names with wrong InstanceNumbers, int16 with slope/intercept, one enhanced
  multi-frame file, RLE and JPEG 2000) read back through `segvol convert` to the NIfTI's
  voxels and affine (nibabel, ≤ 1e-4 mm), and to what dcm2niix makes of the same files.
- Real files shipped in pydicom's package (CT_small, MR_small and its RLE / JPEG 2000 copies,
  a DICOMDIR) read; JPEG-LS refused by name.
- Each refusal (hole in the stack, tilt, two series, mixed sizes, mixed orientations,
  truncated file, no pixel data, non-image object, unsupported transfer syntax): exit ≠ 0, one
  `error:` line naming the problem, nothing written.
- A SEG written by `segvol segment --out seg.dcm`: dciodvfy (dicom3tools) reports no error;
  highdicom's segread gives our NIfTI mask's voxels by source instance; pydicom finds every
  frame's position on its source slice and every reference resolving to a source file.
- A SEG written by highdicom reads back (`segvol convert --from seg.dcm --image DIR`) into
  the label map it was made from.

    python check_dicom.py --segvol target/debug/segvol --shared ../shared
"""
import argparse
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
from pydicom.sr.codedict import codes

HERE = os.path.dirname(os.path.abspath(__file__))
PYDICOM_FILES = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")


def get_testdata_file(name):
    """A file shipped inside pydicom's wheel (never pydicom's downloader: no network here)."""
    p = os.path.join(PYDICOM_FILES, name)
    if not os.path.exists(p):
        raise SystemExit(f"{p}: not in this pydicom package")
    return p
PASSED = 0
FAILED = []


def check(name, ok, detail=""):
    global PASSED
    if ok:
        PASSED += 1
        print(f"ok   {name}")
    else:
        FAILED.append(name)
        print(f"FAIL {name} {detail}")


def run(segvol, *args):
    p = subprocess.run([segvol, *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def make(nifti, out, *flags):
    subprocess.run(
        [sys.executable, os.path.join(HERE, "make_series.py"), "--nifti", nifti, "--out", out, *flags],
        check=True,
    )


def read_back(segvol, src, out_nii, *extra):
    rc, so, se = run(segvol, "convert", "--from", src, "--to", out_nii, *extra)
    if rc != 0:
        return None, se
    return nib.load(out_nii), se


def same_as_nifti(segvol, tmp, name, nifti, flags):
    d = os.path.join(tmp, name)
    aff_file = os.path.join(tmp, name + ".aff")
    make(nifti, d, *flags, "--write-affine", aff_file)
    got, err = read_back(segvol, d, os.path.join(tmp, name + ".nii.gz"))
    if got is None:
        check(f"read {name}", False, err)
        return None
    want = np.rint(np.asarray(nib.load(nifti).dataobj)).astype(np.float64)
    have = np.asarray(got.dataobj).astype(np.float64)
    check(f"{name}: same voxels as the NIfTI", have.shape == want.shape and np.array_equal(have, want))
    diff = np.abs(np.loadtxt(aff_file) - got.affine).max()
    check(f"{name}: same affine as the NIfTI (max |Δ| {diff:.2e} mm ≤ 1e-4)", diff <= 1e-4)
    return d


def refuses(segvol, tmp, name, src, needle, *extra):
    out = os.path.join(tmp, f"refused_{name}.nii.gz")
    rc, so, se = run(segvol, "convert", "--from", src, "--to", out, *extra)
    errs = [l for l in se.splitlines() if l.startswith("error:")]
    ok = rc != 0 and len(errs) == 1 and needle in se and not os.path.exists(out)
    check(f"refuses {name} ({needle!r})", ok, f"rc={rc} stderr={se!r}")


def same_as_dcm2niix(segvol, tmp, name):
    """dcm2niix (Debian's) on the same series: the same world position for every voxel once its
    axis flips (it stores rows bottom-up) are undone with nibabel's orientation tools."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform
    src = os.path.join(tmp, name)
    out = os.path.join(tmp, name + "_dcm2niix")
    os.makedirs(out)
    p = subprocess.run(["dcm2niix", "-z", "n", "-f", "x", "-o", out, src], capture_output=True, text=True)
    ours, err = read_back(segvol, src, os.path.join(tmp, name + "_ours.nii"))
    theirs = glob.glob(os.path.join(out, "x*.nii"))
    if p.returncode != 0 or ours is None or len(theirs) != 1:
        check(f"{name}: dcm2niix agrees", False, p.stdout[-500:] + err)
        return
    b = nib.load(theirs[0])
    t = ornt_transform(io_orientation(ours.affine), io_orientation(b.affine))
    va = apply_orientation(np.asarray(ours.dataobj).astype(np.float64), t)
    aff = ours.affine @ inv_ornt_aff(t, ours.shape)
    diff = np.abs(aff - b.affine).max()
    check(f"{name}: dcm2niix gives the same voxels at the same places (max |Δaffine| {diff:.1e} mm)",
          np.array_equal(va, np.asarray(b.dataobj).astype(np.float64)) and diff <= 1e-4)


def sort_files(d):
    """A series' files sorted along the normal, as the standard says (independent of us)."""
    dss = [(f, pydicom.dcmread(f)) for f in glob.glob(os.path.join(d, "*"))]
    o = np.array(dss[0][1].ImageOrientationPatient, dtype=float)
    n = np.cross(o[:3], o[3:])
    dss.sort(key=lambda t: float(np.dot(n, np.array(t[1].ImagePositionPatient, dtype=float))))
    return dss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segvol", required=True)
    ap.add_argument("--shared", required=True)
    args = ap.parse_args()
    segvol = os.path.abspath(args.segvol)
    nifti = os.path.join(args.shared, "data", "nifti")
    ct = os.path.join(nifti, "ct_kidney_right_img.nii.gz")
    mr = os.path.join(nifti, "mr_abdomen_multi3_img.nii.gz")
    tmp = tempfile.mkdtemp(prefix="segvol-dicom-")
    try:
        # --- reading generated series ---
        axial = same_as_nifti(segvol, tmp, "ct_axial", ct, [])
        same_as_nifti(segvol, tmp, "ct_oblique_shuffled_rescaled", ct, ["--oblique", "--shuffle", "--rescale"])
        same_as_nifti(segvol, tmp, "ct_enhanced_multiframe", ct, ["--multiframe", "--oblique"])
        same_as_nifti(segvol, tmp, "ct_rle", ct, ["--compress", "rle"])
        same_as_nifti(segvol, tmp, "ct_jpeg2000", ct, ["--compress", "j2k", "--rescale"])
        same_as_nifti(segvol, tmp, "mr_oblique", mr, ["--modality", "MR", "--oblique"])

        for name in ["ct_axial", "ct_oblique_shuffled_rescaled", "ct_enhanced_multiframe", "mr_oblique"]:
            same_as_dcm2niix(segvol, tmp, name)

        # Shuffled file names and order: the identical volume.
        shuffled = os.path.join(tmp, "ct_axial_renamed")
        os.makedirs(shuffled)
        files = sorted(glob.glob(os.path.join(axial, "*")))
        names = [f"x{random.Random(7).random():.6f}_{i}" for i in range(len(files))]
        random.Random(3).shuffle(names)
        for f, n in zip(files, names):
            shutil.copy(f, os.path.join(shuffled, n))
        a, _ = read_back(segvol, axial, os.path.join(tmp, "a1.nii.gz"))
        b, _ = read_back(segvol, shuffled, os.path.join(tmp, "a2.nii.gz"))
        check(
            "renamed, reordered files give the identical volume",
            a is not None and b is not None
            and np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            and np.array_equal(a.affine, b.affine),
        )

        # --- real files from pydicom's package ---
        mr_small = get_testdata_file("MR_small.dcm")
        ref, err = read_back(segvol, mr_small, os.path.join(tmp, "mr_small.nii.gz"))
        want = pydicom.dcmread(mr_small).pixel_array.astype(np.float64)
        check("pydicom MR_small.dcm reads", ref is not None and np.array_equal(np.asarray(ref.dataobj)[:, :, 0].T, want), err)
        for f in ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"]:
            got, err = read_back(segvol, get_testdata_file(f), os.path.join(tmp, f + ".nii.gz"))
            check(f"pydicom {f} decodes to MR_small's pixels", got is not None and ref is not None
                  and np.array_equal(np.asarray(got.dataobj), np.asarray(ref.dataobj)), err)
        ct_small, err = read_back(segvol, get_testdata_file("CT_small.dcm"), os.path.join(tmp, "ct_small.nii.gz"))
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        check("pydicom CT_small.dcm reads in HU", ct_small is not None
              and np.array_equal(np.asarray(ct_small.dataobj)[:, :, 0].T.astype(np.float64), hu), err)
        dicomdir = os.path.join(os.path.dirname(get_testdata_file("MR_small.dcm")), "dicomdirtests", "DICOMDIR")
        rc, so, se = run(segvol, "info", dicomdir)
        check("a DICOMDIR's series are listed", rc == 0 and "14 series" in so and "Routine Brain" in so
              and "pick one with --series" in so, so + se)
        rc, so, se = run(segvol, "info", dicomdir, "--series", "1.3.6.1.4.1.5962.1.1.0.0.0.1194734704.16302.0.6")
        check("a real 5-slice CT series of the DICOMDIR reads", rc == 0 and "5 slices" in so, so + se)
        # Real edge cases of that DICOMDIR: a CT series whose slices jump 202.5 mm, an MR
        # series that mixes a localiser's orientations.
        refuses(segvol, tmp, "real uneven gaps", dicomdir, "uneven slice gaps", "--series",
                "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2")
        refuses(segvol, tmp, "real mixed orientations", dicomdir, "mixes orientations", "--series",
                "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.136")

        # --- refusals ---
        refuses(segvol, tmp, "unsupported transfer syntax", get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), "JPEG-LS")
        refuses(segvol, tmp, "truncated file", get_testdata_file("MR_truncated.dcm"), "MR_truncated.dcm")
        refuses(segvol, tmp, "non-image object", get_testdata_file("rtplan.dcm"), "no image series")
        refuses(segvol, tmp, "no geometry (secondary capture)", get_testdata_file("SC_rgb_rle.dcm"),
                "no usable ImagePositionPatient")
        rgb = pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm"))
        rgb.ImagePositionPatient, rgb.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
        rgb.PixelSpacing = [1, 1]
        rgb_path = os.path.join(tmp, "rgb.dcm")
        rgb.save_as(rgb_path)
        refuses(segvol, tmp, "colour image", rgb_path, "a colour image")
        dup = os.path.join(tmp, "duplicate")
        shutil.copytree(axial, dup)
        d = pydicom.dcmread(sorted(glob.glob(os.path.join(dup, "*")))[4])
        d.SOPInstanceUID = pydicom.uid.generate_uid()
        d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
        d.save_as(os.path.join(dup, "zz_second_echo.dcm"))
        refuses(segvol, tmp, "two slices at one position", dup, "two slices at the same position")
        hole = os.path.join(tmp, "hole")
        make(ct, hole, "--drop", "9")
        refuses(segvol, tmp, "a missing slice", hole, "uneven slice gaps")
        tilt = os.path.join(tmp, "tilt")
        make(ct, tilt, "--tilt")
        refuses(segvol, tmp, "gantry tilt", tilt, "not stacked along their normal")
        two = os.path.join(tmp, "two_series")
        make(ct, os.path.join(two, "a"))
        make(mr, os.path.join(two, "b"), "--modality", "MR")
        refuses(segvol, tmp, "two series, none picked", two, "2 image series here")
        rc, so, se = run(segvol, "convert", "--from", two, "--series", "2", "--to", os.path.join(tmp, "picked.nii.gz"))
        check("--series 2 picks the second series", rc == 0 and nib.load(os.path.join(tmp, "picked.nii.gz")).shape
              in (nib.load(mr).shape, nib.load(ct).shape), se)
        mixed = os.path.join(tmp, "mixed_sizes")
        shutil.copytree(axial, mixed)
        other = sort_files(os.path.join(two, "b"))[0][1]
        other.SeriesInstanceUID = pydicom.dcmread(glob.glob(os.path.join(axial, "*"))[0]).SeriesInstanceUID
        other.save_as(os.path.join(mixed, "zz_other.dcm"))
        refuses(segvol, tmp, "mixed sizes", mixed, "mixes image sizes")
        orient = os.path.join(tmp, "mixed_orientation")
        shutil.copytree(axial, orient)
        f0 = sorted(glob.glob(os.path.join(orient, "*")))[3]
        d = pydicom.dcmread(f0)
        d.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        d.save_as(f0)
        refuses(segvol, tmp, "mixed orientations", orient, "mixes orientations")
        nopix = os.path.join(tmp, "no_pixels")
        shutil.copytree(axial, nopix)
        f0 = sorted(glob.glob(os.path.join(nopix, "*")))[2]
        d = pydicom.dcmread(f0)
        del d.PixelData
        d.save_as(f0)
        refuses(segvol, tmp, "missing pixel data", nopix, "no Pixel Data")
        trunc = os.path.join(tmp, "truncated_series")
        shutil.copytree(axial, trunc)
        f0 = sorted(glob.glob(os.path.join(trunc, "*")))[5]
        with open(f0, "rb") as fh:
            data = fh.read()
        with open(f0, "wb") as fh:
            fh.write(data[: len(data) // 2])
        refuses(segvol, tmp, "a truncated slice", trunc, os.path.basename(f0))

        # --- DICOM SEG out ---
        src = os.path.join(tmp, "ct_oblique_shuffled_rescaled")
        seg_path = os.path.join(tmp, "seg.dcm")
        nii_path = os.path.join(tmp, "seg.nii.gz")
        box = ["--box", "4,10,8,12,30,28"]
        rc1, _, se1 = run(segvol, "segment", "--image", src, *box, "--name", "kidney", "--out", seg_path)
        rc2, _, se2 = run(segvol, "segment", "--image", src, *box, "--out", nii_path)
        check("segment --out seg.dcm and --out .nii.gz run", rc1 == 0 and rc2 == 0, se1 + se2)
        v = subprocess.run(["dciodvfy", seg_path], capture_output=True, text=True)
        errors = [l for l in (v.stdout + v.stderr).splitlines() if l.startswith("Error")]
        check("dciodvfy: no error in our SEG", not errors and "Segmentation" in v.stdout + v.stderr,
              "\n".join(errors[:20]))
        ours = np.asarray(nib.load(nii_path).dataobj)  # (x=col, y=row, z=slice)
        slices = sort_files(src)
        uids = [d.SOPInstanceUID for _, d in slices]
        seg = hd.seg.segread(seg_path)
        px = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])
        want = np.transpose(ours, (2, 1, 0)) > 0  # (slice, row, col)
        check("highdicom reads our SEG: the NIfTI mask's voxels on every source slice",
              px.shape[:3] == want.shape and np.array_equal(px[..., 0] > 0, want), f"{px.shape} vs {want.shape}")
        check("highdicom: segment label and algorithm",
              seg.get_segment_description(1).segment_label == "kidney"
              and seg.get_segment_description(1).algorithm_type == hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC)
        vol = seg.get_volume()
        check("highdicom builds a volume from our SEG", vol is not None and vol.array.sum() == want.sum())
        raw = pydicom.dcmread(seg_path)
        by_uid = {d.SOPInstanceUID: d for _, d in slices}
        pos_ok = ref_ok = True
        for f in raw.PerFrameFunctionalGroupsSequence:
            r = f.DerivationImageSequence[0].SourceImageSequence[0]
            s = by_uid.get(r.ReferencedSOPInstanceUID)
            ref_ok &= s is not None and r.ReferencedSOPClassUID == s.SOPClassUID
            if s is not None:
                pos_ok &= np.allclose(
                    np.array(f.PlanePositionSequence[0].ImagePositionPatient, dtype=float),
                    np.array(s.ImagePositionPatient, dtype=float), atol=1e-4)
        check("pydicom: every frame references a source instance", ref_ok)
        check("pydicom: every frame lies where its source slice lies", pos_ok)
        check("pydicom: only non-empty frames", int(raw.NumberOfFrames) == int(want.any(axis=(1, 2)).sum()))
        check("pydicom: patient and study copied from the source",
              raw.PatientID == slices[0][1].PatientID and raw.StudyInstanceUID == slices[0][1].StudyInstanceUID
              and raw.FrameOfReferenceUID == slices[0][1].FrameOfReferenceUID)
        rc, _, se = run(segvol, "segment", "--image", src, *box, "--max-voxels", "1000",
                        "--out", os.path.join(tmp, "big.dcm"))
        check("--max-voxels refuses a DICOM series from its headers", rc != 0
              and "34560 voxels, more than --max-voxels 1000" in se
              and not os.path.exists(os.path.join(tmp, "big.dcm")), se)
        rc, _, se = run(segvol, "segment", "--image", ct, *box, "--out", os.path.join(tmp, "x.dcm"))
        check("segment refuses a SEG for a NIfTI image", rc != 0 and "not DICOM" in se
              and not os.path.exists(os.path.join(tmp, "x.dcm")), se)

        # --- segvol view on a DICOM folder: Save (here its --replay) writes a SEG ---
        actions = os.path.join(tmp, "actions.json")
        with open(actions, "w") as fh:
            fh.write('[{"action":"box","lo":[4,10,8],"hi":[12,30,28]},'
                     '{"action":"point","zyx":[8,20,18],"fg":true},{"action":"next"},'
                     '{"action":"box","lo":[14,5,5],"hi":[18,15,15]}]')
        vseg, vnii = os.path.join(tmp, "view.dcm"), os.path.join(tmp, "view.nii.gz")
        r1 = run(segvol, "view", src, "--replay", actions, "--out", vseg)
        r2 = run(segvol, "view", src, "--replay", actions, "--out", vnii)
        check("view DIR --replay --out .dcm and .nii.gz run", r1[0] == 0 and r2[0] == 0, r1[2] + r2[2])
        if r1[0] == 0 and r2[0] == 0:
            lab = np.transpose(np.asarray(nib.load(vnii).dataobj), (2, 1, 0))
            vs = hd.seg.segread(vseg)
            nums = sorted(int(n) for n in vs.segment_numbers)
            px = vs.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=nums)
            rebuilt = np.zeros(lab.shape, np.uint8)
            for k, n in enumerate(nums):
                rebuilt[px[..., k] > 0] = n
            check(f"view's SEG (segments {nums}) holds the label map view writes as NIfTI",
                  nums == [1, 2] and np.array_equal(rebuilt, lab))
            v = subprocess.run(["dciodvfy", vseg], capture_output=True, text=True)
            check("dciodvfy: no error in view's two-segment SEG",
                  not [l for l in (v.stdout + v.stderr).splitlines() if l.startswith("Error")])

        # --- a SEG written by highdicom reads back into our label map ---
        src_ds = [d for _, d in slices]
        labels = np.zeros((len(src_ds), src_ds[0].Rows, src_ds[0].Columns), np.uint8)
        labels[3:9, 5:20, 6:15] = 1
        labels[12:15, 20:30, 10:25] = 2
        descs = [
            hd.seg.SegmentDescription(
                segment_number=i, segment_label=name,
                segmented_property_category=codes.SCT.Organ, segmented_property_type=t,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
            for i, name, t in [(1, "kidney", codes.SCT.Kidney), (2, "liver", codes.SCT.Liver)]
        ]
        theirs = hd.seg.Segmentation(
            source_images=src_ds, pixel_array=labels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
            series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
            instance_number=1, manufacturer="test", manufacturer_model_name="test",
            software_versions="1", device_serial_number="1")
        theirs_path = os.path.join(tmp, "highdicom_seg.dcm")
        theirs.save_as(theirs_path)
        back = os.path.join(tmp, "highdicom_back.nii.gz")
        rc, so, se = run(segvol, "convert", "--from", theirs_path, "--image", src, "--to", back)
        got = np.transpose(np.asarray(nib.load(back).dataobj), (2, 1, 0)) if rc == 0 else None
        check("a highdicom SEG reads back into the label map it was made from",
              got is not None and np.array_equal(got, labels), se)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{PASSED} passed, {len(FAILED)} failed")
    if FAILED:
        sys.exit(1)


if __name__ == "__main__":
    main()
