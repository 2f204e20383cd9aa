#!/usr/bin/env python3
"""Writes a DICOM series from a NIfTI volume, with pydicom (independently of segvol-rs), so
that reading the series back can be compared with reading the NIfTI.

The geometry is the standard one (PS3.3 C.7.6.2): voxel (i, j, k) of the NIfTI is column i,
row j of slice k; ImageOrientationPatient and ImagePositionPatient come from nibabel's affine
turned from RAS into LPS. Variants: an oblique rotation of the whole grid, shuffled and
meaningless file names, int16 storage with a rescale slope/intercept, one enhanced multi-frame
file, RLE or JPEG 2000 compression, a dropped slice, a tilted (sheared) stack.

    python make_series.py --nifti ct.nii.gz --out DIR [--oblique] [--shuffle] [--rescale]
        [--multiframe] [--compress rle|j2k] [--modality CT|MR] [--drop K] [--tilt]
"""
import argparse
import os
import random

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def rotation(deg_x, deg_z):
    a, b = np.radians(deg_x), np.radians(deg_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    r = np.eye(4)
    r[:3, :3] = rz @ rx
    return r


def ds_str(v):
    # DS holds at most 16 characters; 10 significant digits is 1e-6 mm for any body position.
    return float(f"{v:.10g}")


def base(sop_class, modality, study, series, frame_of_ref, k):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Test^Synthetic"
    ds.PatientID = "SEGVOL-TEST"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study
    ds.StudyDate = "20261202"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 3
    ds.SeriesDescription = "generated from NIfTI"
    ds.FrameOfReferenceUID = frame_of_ref
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "segvol-rs test"
    ds.InstanceNumber = k + 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nifti", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--oblique", action="store_true")
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--rescale", action="store_true")
    ap.add_argument("--multiframe", action="store_true")
    ap.add_argument("--compress", choices=["rle", "j2k"])
    ap.add_argument("--modality", default="CT", choices=["CT", "MR"])
    ap.add_argument("--drop", type=int, help="leave slice K out (a hole in the stack)")
    ap.add_argument("--tilt", action="store_true", help="shift each slice 0.5 mm in-plane")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write-affine", help="write the grid's RAS affine (after --oblique) here")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    img = nib.load(args.nifti)
    vol = np.asarray(img.dataobj)
    if vol.ndim != 3:
        raise SystemExit(f"{args.nifti}: not 3-D")
    vol = np.rint(vol).astype(np.int32)
    ras = img.affine.copy()
    if args.oblique:
        ras = rotation(20.0, 10.0) @ ras
    if args.write_affine:
        np.savetxt(args.write_affine, ras)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    cx, cy, cz = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dc, dr = np.linalg.norm(cx), np.linalg.norm(cy)
    x, y = cx / dc, cy / dr
    orientation = [ds_str(v) for v in list(x) + list(y)]
    spacing = [ds_str(dr), ds_str(dc)]

    if args.rescale:
        slope, intercept = 0.5, -50.0
        stored = (vol * 2 + 100).astype(np.int64)
    else:
        slope, intercept = 1.0, 0.0
        stored = vol.astype(np.int64)
    signed = stored.min() < 0
    dtype = np.int16 if signed else np.uint16
    if stored.min() < np.iinfo(dtype).min or stored.max() > np.iinfo(dtype).max:
        raise SystemExit("values do not fit 16 bits")
    stored = stored.astype(dtype)

    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    os.makedirs(args.out, exist_ok=True)
    nk = vol.shape[2]
    ks = [k for k in range(nk) if k != args.drop]

    def position(k):
        p = lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + lps[:3, 3]
        if args.tilt:
            p = p + x * 0.5 * k
        return [ds_str(v) for v in p]

    def pixels(k):
        return np.ascontiguousarray(stored[:, :, k].T)  # rows = j, columns = i

    def finish(ds, arr):
        ds.Rows, ds.Columns = arr.shape[-2], arr.shape[-1]
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if args.modality == "CT":
            ds.RescaleType = "HU"
        if args.compress == "rle":
            ds.compress(RLELossless, arr, encoding_plugin="pydicom")
        elif args.compress == "j2k":
            ds.compress(JPEG2000Lossless, arr)
        else:
            ds.PixelData = arr.tobytes()

    if args.multiframe:
        sop = ENHANCED_CT if args.modality == "CT" else ENHANCED_MR
        ds = base(sop, args.modality, study, series, frame_of_ref, 0)
        order = list(ks)
        rng.shuffle(order)  # frames stored out of order: the reader sorts by position
        shared = Dataset()
        pm = Dataset()
        pm.PixelSpacing = spacing
        pm.SliceThickness = ds_str(abs(np.linalg.norm(cz)))
        shared.PixelMeasuresSequence = Sequence([pm])
        po = Dataset()
        po.ImageOrientationPatient = orientation
        shared.PlaneOrientationSequence = Sequence([po])
        pv = Dataset()
        pv.RescaleSlope = slope
        pv.RescaleIntercept = intercept
        pv.RescaleType = "HU" if args.modality == "CT" else "US"
        shared.PixelValueTransformationSequence = Sequence([pv])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per = []
        for k in order:
            f = Dataset()
            pp = Dataset()
            pp.ImagePositionPatient = position(k)
            f.PlanePositionSequence = Sequence([pp])
            per.append(f)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        ds.NumberOfFrames = len(order)
        arr = np.stack([pixels(k) for k in order])
        finish(ds, arr)
        del ds.RescaleSlope, ds.RescaleIntercept  # only in the functional groups
        if "RescaleType" in ds:
            del ds.RescaleType
        ds.save_as(os.path.join(args.out, "enhanced.dcm"), enforce_file_format=True)
        return

    sop = CT if args.modality == "CT" else MR
    names = list(range(len(ks)))
    if args.shuffle:
        rng.shuffle(names)
    for n, k in zip(names, ks):
        ds = base(sop, args.modality, study, series, frame_of_ref, k)
        ds.ImageOrientationPatient = orientation
        ds.ImagePositionPatient = position(k)
        ds.PixelSpacing = spacing
        ds.SliceThickness = ds_str(abs(np.linalg.norm(cz)))
        # Deliberately wrong InstanceNumber when shuffled: the reader must not use it.
        if args.shuffle:
            ds.InstanceNumber = n + 1
        finish(ds, pixels(k))
        name = f"IM{n:05d}" if args.shuffle else f"slice_{k:04d}.dcm"
        ds.save_as(os.path.join(args.out, name), enforce_file_format=True)


if __name__ == "__main__":
    main()
