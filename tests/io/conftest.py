"""Fixtures of the DICOM mask tests: a synthetic case as a DICOM series, and writers of a DICOM
SEG (highdicom) and of an RTSTRUCT (pydicom, contours from contourpy's marching squares) of a
synthetic mask."""

import shutil

import numpy as np
import pytest

UID_ROOT = "1.2.826.0.1.3680043.8.498.7716"


@pytest.fixture
def real_ct(shared_data, tmp_path):
    """The three contiguous slices of the real CT series (the fourth lies 202 mm away), copied into
    a folder of their own: ``(folder, dicom_dir)``."""
    dicom = shared_data / "dicom"
    folder = tmp_path / "ct3"
    folder.mkdir()
    for f in sorted((dicom / "pydicom_ct2_series").iterdir())[1:]:
        shutil.copy(f, folder / f.name)
    return folder, dicom


@pytest.fixture
def synthetic_dicom_case(tmp_path, write_dicom_series):
    """``(folder, image, label)``: a 24×20×8 noise volume with a bright ellipsoid, written as a DICOM
    series, and its label image (1 in the ellipsoid, 2 in a second, overlapping nothing)."""
    import SimpleITK as sitk

    z, y, x = np.mgrid[0:8, 0:20, 0:24]
    inside = ((x - 11.3) / 6.2) ** 2 + ((y - 9.6) / 5.1) ** 2 + ((z - 3.7) / 2.6) ** 2 <= 1
    other = ((x - 20) / 2.5) ** 2 + ((y - 16) / 2.5) ** 2 + ((z - 5) / 1.5) ** 2 <= 1
    rng = np.random.default_rng(7)
    values = rng.normal(100, 15, size=inside.shape) + 60 * inside
    image = sitk.GetImageFromArray(values.astype(np.int16))
    image.SetSpacing((0.75, 0.75, 2.5))
    image.SetOrigin((-12.0, 30.5, -40.0))
    label = sitk.GetImageFromArray((inside + 2 * other).astype(np.uint8))
    label.CopyInformation(image)
    folder = tmp_path / "series"
    write_dicom_series(image, folder, f"{UID_ROOT}.1", description="vibe ap")
    return folder, image, label


def _source_datasets(folder):
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    for ds in datasets:  # SimpleITK's writer sets none; highdicom requires it
        ds.FrameOfReferenceUID = f"{UID_ROOT}.9"
    return datasets


@pytest.fixture
def write_seg():
    """``write_seg(folder, masks, path, *, labels=None, order=None, fractional=False)``: a DICOM SEG
    of the series in `folder`, one segment per (z, y, x) array of `masks` (0/1, or fractions in
    0..1 when `fractional`), labelled `labels`; `order` permutes the source slices, and so the
    frames (highdicom writes frames in source order, empty ones omitted)."""

    def write(folder, masks, path, *, labels=None, order=None, fractional=False):
        import highdicom as hd
        from pydicom.sr.codedict import codes

        datasets = _source_datasets(folder)
        if order is not None:
            datasets = [datasets[i] for i in order]
        z_of = [int(ds.InstanceNumber) - 1 for ds in datasets]
        labels = labels or [f"segment {i + 1}" for i in range(len(masks))]
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=i + 1,
                segment_label=label,
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Tumor,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
            for i, label in enumerate(labels)
        ]
        pixels = np.stack([np.asarray(m)[z_of] for m in masks], axis=-1)
        kind = hd.seg.SegmentationTypeValues
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=pixels.astype(np.float32 if fractional else np.uint8),
            segmentation_type=kind.FRACTIONAL if fractional else kind.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=100,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="p53radiomics tests",
            manufacturer_model_name="synthetic",
            software_versions="0",
            device_serial_number="0",
        )
        seg.save_as(path)
        return path

    return write


@pytest.fixture
def write_rtstruct():
    """``write_rtstruct(image, masks, path, *, names=None)``: an RTSTRUCT whose ROI ``names[i]``
    holds the contours of ``masks[i]`` (a (z, y, x) 0/1 array on `image`'s grid), traced on each
    slice by marching squares at level 0.5 (contourpy), as a contouring tool would."""

    def write(image, masks, path, *, names=None):
        import contourpy
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.sequence import Sequence
        from pydicom.uid import ExplicitVRLittleEndian

        names = names or [f"ROI {i + 1}" for i in range(len(masks))]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
        ds.file_meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.5"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality = "RTSTRUCT"
        ds.StructureSetLabel = "synthetic"
        rois, contours = [], []
        for number, (name, mask) in enumerate(zip(names, masks, strict=True), start=1):
            rois.append(Dataset())
            rois[-1].ROINumber, rois[-1].ROIName = number, name
            items = []
            for z, plane in enumerate(np.asarray(mask, dtype=float)):
                padded = np.pad(plane, 1)
                for line in contourpy.contour_generator(z=padded).lines(0.5):
                    points = [
                        image.TransformContinuousIndexToPhysicalPoint((x - 1, y - 1, z))
                        for x, y in line[:-1]
                    ]
                    item = Dataset()
                    item.ContourGeometricType = "CLOSED_PLANAR"
                    item.NumberOfContourPoints = len(points)
                    item.ContourData = [round(float(v), 4) for p in points for v in p]
                    items.append(item)
            contour = Dataset()
            contour.ReferencedROINumber = number
            contour.ContourSequence = Sequence(items)
            contours.append(contour)
        ds.StructureSetROISequence = Sequence(rois)
        ds.ROIContourSequence = Sequence(contours)
        ds.save_as(path, enforce_file_format=True)
        return path

    return write
