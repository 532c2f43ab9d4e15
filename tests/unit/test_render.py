"""Unit tests for shared.dicom.render: VOI/colour pipelines, viewport, frames and errors."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_windowing
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from shared.dicom import render
from shared.dicom.render import (
    RENDER_MEDIA_TYPES,
    Viewport,
    parse_viewport,
    render_frame,
    render_instance,
)
from shared.errors import InvalidArgument, InvalidDicom, NotAcceptable
from tests.dicom_factory import Spec, make_dataset

_CACHE: dict[str, Dataset] = {}


def load(name: str) -> Dataset:
    """A private copy of one of pydicom's bundled test files (never downloads)."""
    if name not in _CACHE:
        path = get_testdata_file(name, download=False)
        assert isinstance(path, str), f"{name} is not bundled with pydicom"
        _CACHE[name] = dcmread(path)
    return copy.deepcopy(_CACHE[name])


def png(ds: Dataset, frame: int = 1, viewport: str | None = None) -> np.ndarray:
    """Render losslessly and decode, so tests can compare exact pixel values."""
    data = render_frame(ds, frame, "image/png", parse_viewport(viewport))
    return np.asarray(Image.open(io.BytesIO(data)))


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def native(values: np.ndarray, signed: bool = False, **attributes: object) -> Dataset:
    """An in-memory 16-bit greyscale instance; a 3-D array makes a multi-frame one."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = values.shape[-2:]
    if values.ndim == 3:
        ds.NumberOfFrames = values.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = int(signed)
    ds.PixelData = values.astype("<i2" if signed else "<u2").tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def lut_item(descriptor: list[int], data: list[int]) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = data
    return item


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR onto 0..255, computed independently of the module."""
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.clip(np.rint(scaled), 0, 255)


# --- parse_viewport ---------------------------------------------------------------------


def test_parse_viewport_absent_is_none() -> None:
    assert parse_viewport(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512,512", Viewport(512, 512)),
        (" 256 , 128 ", Viewport(256, 128)),
        ("100,80,10,20.5,30,-40", Viewport(100, 80, 10.0, 20.5, 30.0, -40.0)),
        ("100,80,,,,", Viewport(100, 80)),
        ("100,80,5,,,-7", Viewport(100, 80, 5.0, 0.0, None, -7.0)),
    ],
)
def test_parse_viewport_valid(text: str, expected: Viewport) -> None:
    assert parse_viewport(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "512",
        "512,",
        ",512",
        "1,2,3",
        "10,10,1,2,3",
        "10,10,1,2,3,4,5",
        "0,10",
        "10,0",
        "-5,10",
        "a,b",
        "1.5,2",
        "1e3,10",
        "99999,10",
        "10,10,-1,0,5,5",
        "10,10,0,0,0,5",
        "10,10,0,0,5,0",
        "10,10,nan,0,1,1",
        "10,10,0,0,inf,1",
        "10,10,0,0,1_0,1",
    ],
)
def test_parse_viewport_malformed(text: str) -> None:
    with pytest.raises(InvalidArgument, match="viewport"):
        parse_viewport(text)


def test_viewport_constructor_validates() -> None:
    with pytest.raises(InvalidArgument):
        Viewport(0, 10)
    with pytest.raises(InvalidArgument):
        Viewport(10, 10, source_width=0)
    with pytest.raises(InvalidArgument):
        Viewport(10, 10, source_x=-1)


# --- greyscale pipeline -------------------------------------------------------------------


def test_ct_small_signed_rescaled_min_max_uses_full_range() -> None:
    ds = load("CT_small.dcm")
    assert ds.PixelRepresentation == 1 and "WindowCenter" not in ds
    image = opened(render_frame(ds, 1, "image/png"))
    assert (image.mode, image.size) == ("L", (128, 128))
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255


def test_window_centre_renders_mid_grey_on_rescaled_signed_ct() -> None:
    ds = load("CT_small.dcm")
    stored = ds.pixel_array
    hounsfield = float(stored[64, 64]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    ds.WindowCenter = hounsfield
    ds.WindowWidth = 400
    pixels = png(ds)
    assert abs(int(pixels[64, 64]) - 128) <= 1
    units = stored.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.all(pixels[units <= hounsfield - 200] == 0)
    assert np.all(pixels[units > hounsfield + 200] == 255)


def test_mr_small_window_matches_linear_formula() -> None:
    ds = load("MR_small.dcm")
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0)
    expected = linear_window(ds.pixel_array.astype(float), 600.0, 1600.0)
    assert np.abs(png(ds).astype(int) - expected).max() <= 1


def test_only_the_first_of_several_windows_is_used() -> None:
    ds = load("MR_small.dcm")
    ds.WindowCenter = [600, 100]
    ds.WindowWidth = [1600, 10]
    expected = linear_window(ds.pixel_array.astype(float), 600.0, 1600.0)
    assert np.abs(png(ds).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_functions_put_the_centre_at_mid_grey(function: str) -> None:
    values = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)
    ds = native(values, WindowCenter=1000, WindowWidth=2000, VOILUTFunction=function)
    pixels = png(ds)
    assert abs(int(pixels[0, 1]) - 128) <= 1
    assert pixels[0, 0] < pixels[0, 1] < pixels[1, 0] <= pixels[1, 1]


def test_signed_14_bit_jpeg2000_with_window_renders() -> None:
    ds = load("693_J2KI.dcm")
    image = opened(render_frame(ds, 1, "image/jpeg"))
    assert (image.format, image.mode, image.size) == ("JPEG", "L", (512, 512))


def test_monochrome1_is_inverted() -> None:
    ds = load("MR_small.dcm")
    plain = png(ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = png(ds)
    assert np.array_equal(inverted.astype(int), 255 - plain.astype(int))
    assert abs(inverted.mean() - (255 - plain.mean())) < 0.01
    assert abs(inverted.mean() - plain.mean()) > 10


def per_pixel_grey(ds: Dataset) -> np.ndarray:
    """The float64 per-pixel maths the renderer used before its lookup tables (no padding)."""
    values = apply_modality_lut(ds.pixel_array, ds)
    if "WindowCenter" in ds:
        window = Dataset()
        window.PhotometricInterpretation = "MONOCHROME2"
        window.BitsStored = 8
        window.PixelRepresentation = 0
        window.WindowCenter = float(np.ravel(ds.WindowCenter)[0])
        window.WindowWidth = float(np.ravel(ds.WindowWidth)[0])
        window.VOILUTFunction = ds.get("VOILUTFunction", "LINEAR")
        grey = apply_windowing(values, window)
    else:
        low, high = float(values.min()), float(values.max())
        grey = (values.astype(np.float64) - low) * (255.0 / (high - low))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 255.0 - grey
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def _ct_small_windowed_monochrome1() -> Dataset:
    ds = load("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PhotometricInterpretation = "MONOCHROME1"
    return ds


def _synthetic_ct(**attributes: object) -> Dataset:
    ds = make_dataset(Spec(rows=512, columns=512, seed=7))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: load("CT_small.dcm"), id="ct-small-min-max"),
        pytest.param(_ct_small_windowed_monochrome1, id="ct-small-window-monochrome1"),
        pytest.param(lambda: load("MR_small.dcm"), id="mr-small-window"),
        pytest.param(_synthetic_ct, id="synthetic-512-window"),
        pytest.param(lambda: _synthetic_ct(VOILUTFunction="LINEAR_EXACT"), id="linear-exact"),
        pytest.param(lambda: _synthetic_ct(VOILUTFunction="SIGMOID"), id="sigmoid"),
        pytest.param(lambda: _synthetic_ct(RescaleSlope=0.5, WindowWidth=1), id="slope-width-1"),
    ],
)
def test_lookup_table_matches_per_pixel_maths(build: Callable[[], Dataset]) -> None:
    ds = build()
    rendered = png(ds)
    assert np.abs(rendered.astype(int) - per_pixel_grey(ds).astype(int)).max() <= 1
    # The module's own per-pixel path, which float frames and wide value ranges still take.
    view = render._presentation_view(ds, 0)
    direct = render._grey_values(
        ds.pixel_array, view, ds, ds.PhotometricInterpretation == "MONOCHROME1"
    )
    assert np.array_equal(rendered, direct)


def test_window_is_computed_per_stored_value_not_per_pixel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    original = render._apply_window

    def recording(values: np.ndarray, *window: object) -> np.ndarray:
        sizes.append(values.size)
        return original(values, *window)  # type: ignore[arg-type]

    monkeypatch.setattr(render, "_apply_window", recording)
    monkeypatch.setattr(render, "_TABLES", type(render._TABLES)())
    ds = _synthetic_ct()
    png(ds)
    # Once per possible 16-bit stored value, then shared by images with the same window.
    assert sizes == [1 << 16]
    png(_synthetic_ct(SOPInstanceUID="1.2.3.4"))
    assert sizes == [1 << 16]
    png(_synthetic_ct(WindowCenter=100))
    assert sizes == [1 << 16, 1 << 16]


def test_min_max_through_the_table_ignores_absent_levels_and_padding() -> None:
    # Levels 1..99 and 401..999 lie inside the stored range but occur nowhere in the frame.
    values = np.array([[0, 100], [400, 1000]], dtype=np.uint16)
    pixels = png(native(values, PixelPaddingValue=1000))
    assert (pixels[0, 0], pixels[0, 1], pixels[1, 0]) == (0, 64, 255)
    assert pixels[1, 1] == 255


def test_wide_32_bit_range_falls_back_to_per_pixel_maths() -> None:
    values = np.array([[0, 1 << 30], [1 << 29, 3 << 29]], dtype=np.uint32)
    assert render._table_bounds(values) is None
    ds = native(np.zeros((2, 2)))
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelData = values.astype("<u4").tobytes()
    pixels = png(ds)
    assert (pixels[0, 0], pixels[1, 0], pixels[0, 1], pixels[1, 1]) == (0, 85, 170, 255)


def test_voi_lut_sequence_wins_over_window() -> None:
    values = np.arange(16, dtype=np.uint16).reshape(4, 4)
    descending = list(range(4095, -1, -273))
    ds = native(values, WindowCenter=8, WindowWidth=16)
    ds.VOILUTSequence = Sequence([lut_item([16, 0, 12], descending)])
    pixels = png(ds)
    assert pixels[0, 0] == 255 and pixels[3, 3] == 0
    assert np.all(np.diff(pixels.ravel().astype(int)) <= 0)


def test_voi_lut_with_8_bit_entries_beyond_256_does_not_wrap() -> None:
    values = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    ds = native(values)
    ds.VOILUTSequence = Sequence([lut_item([4096, 0, 8], [i // 16 for i in range(4096)])])
    pixels = png(ds)
    assert pixels[0, 0] < pixels[0, 1] < pixels[1, 0] < pixels[1, 1] == 255


def test_modality_lut_sequence_is_applied_before_min_max() -> None:
    values = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    ds = native(values)
    ds.ModalityLUTSequence = Sequence([lut_item([4, 0, 16], [3000, 2000, 1000, 0])])
    pixels = png(ds)
    assert pixels[0, 0] == 255 and pixels[1, 1] == 0


def test_min_max_ignores_pixel_padding() -> None:
    values = np.array([[0, 100], [150, 200]], dtype=np.uint16)
    ds = native(values, PixelPaddingValue=0)
    pixels = png(ds)
    assert (pixels[0, 1], pixels[1, 1]) == (0, 255)
    assert abs(int(pixels[1, 0]) - 128) <= 1


def test_enhanced_multiframe_uses_functional_group_rescale_and_windows() -> None:
    values = np.full((2, 2, 2), 500, dtype=np.uint16)
    values[:, 0, 0] = 0
    values[:, 1, 1] = 1000
    ds = native(values)
    rescale = Dataset()
    rescale.RescaleSlope = 2
    rescale.RescaleIntercept = -1000
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for center in (0, 900):
        voi = Dataset()
        voi.WindowCenter = center
        voi.WindowWidth = 200
        frame = Dataset()
        frame.FrameVOILUTSequence = Sequence([voi])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    # Stored 500 is 0 after rescale: the centre of frame 1's window, far below frame 2's.
    assert abs(int(png(ds, 1)[0, 1]) - 128) <= 1
    assert png(ds, 2)[0, 1] == 0


@pytest.mark.parametrize(
    ("keyword", "dtype", "bits"),
    [("FloatPixelData", "<f4", 32), ("DoubleFloatPixelData", "<f8", 64)],
)
def test_float_pixel_data_renders_min_max(keyword: str, dtype: str, bits: int) -> None:
    values = np.linspace(-1.5, 2.5, 20).reshape(4, 5).astype(dtype)
    values[3, 4] = np.nan
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    setattr(ds, keyword, values.tobytes())
    pixels = png(ds)
    assert pixels.shape == (4, 5)
    assert pixels[0, 0] == 0 and pixels[3, 3] == 255
    assert pixels[3, 4] == 0


def test_single_bit_segmentation_renders_black_and_white() -> None:
    ds = load("liver_1frame.dcm")
    assert ds.BitsAllocated == 1
    assert set(np.unique(png(ds)).tolist()) == {0, 255}


def test_big_endian_renders_like_little_endian() -> None:
    assert np.array_equal(png(load("MR_small_bigendian.dcm")), png(load("MR_small.dcm")))


# --- colour pipeline -----------------------------------------------------------------------


def test_rgb_is_rendered_as_stored() -> None:
    ds = load("examples_rgb_color.dcm")
    assert ds.PhotometricInterpretation == "RGB"
    image = opened(render_frame(ds, 1, "image/png"))
    assert (image.mode, image.size) == ("RGB", (320, 240))
    assert np.array_equal(np.asarray(image), ds.pixel_array)


def test_16_bit_rgb_is_scaled_to_8_bits() -> None:
    ds = load("SC_rgb_rle_16bit.dcm")
    expected = np.rint(ds.pixel_array.astype(float) * 255 / 65535)
    assert np.abs(png(ds).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_is_converted_to_rgb(name: str) -> None:
    ds = load(name)
    assert ds.PhotometricInterpretation.startswith("YBR_FULL")
    pixels = png(ds)
    assert pixels.shape == (100, 100, 3)
    # The file's top band is pure red once converted; left as YBR it would not be.
    red = pixels[2, 50].astype(int)
    assert red[0] > 200 and red[1] < 40 and red[2] < 40


def test_palette_colour_goes_through_the_palette() -> None:
    ds = load("examples_palette.dcm")
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    pixels = png(ds)
    assert pixels.shape == (ds.Rows, ds.Columns, 3)
    expected = np.rint(apply_color_lut(ds.pixel_array, ds)[..., :3].astype(float) / 257)
    assert np.abs(pixels.astype(int) - expected).max() <= 1


# --- frames ---------------------------------------------------------------------------------


def test_multiframe_ybr_frame_5() -> None:
    ds = load("examples_ybr_color.dcm")
    frame5 = png(ds, 5)
    assert frame5.shape == (240, 320, 3)
    assert np.abs(frame5.astype(int) - ds.pixel_array[4].astype(int)).max() <= 1


def test_multiframe_rtdose_each_frame_renders() -> None:
    ds = load("rtdose.dcm")
    assert int(ds.NumberOfFrames) == 15
    for frame in (1, 15):
        image = opened(render_frame(ds, frame, "image/jpeg"))
        assert (image.mode, image.size) == ("L", (10, 10))


@pytest.mark.parametrize("frame", [0, -1, 16])
def test_frame_out_of_range(frame: int) -> None:
    with pytest.raises(InvalidArgument, match="frame"):
        render_frame(load("rtdose.dcm"), frame, "image/jpeg")


def test_frame_2_of_single_frame_instance_is_out_of_range() -> None:
    with pytest.raises(InvalidArgument):
        render_frame(load("CT_small.dcm"), 2, "image/png")


def test_render_instance_is_the_first_frame() -> None:
    ds = load("rtdose.dcm")
    assert render_instance(ds, "image/png") == render_frame(ds, 1, "image/png")
    assert render_instance(ds, "image/png") != render_frame(ds, 8, "image/png")


# --- viewport -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("viewport", "size"),
    [("100,100", (100, 75)), ("64,512", (64, 48)), ("1000,60", (80, 60)), ("320,240", (320, 240))],
)
def test_viewport_fits_and_keeps_aspect_ratio(viewport: str, size: tuple[int, int]) -> None:
    ds = load("examples_rgb_color.dcm")
    image = opened(render_frame(ds, 1, "image/jpeg", parse_viewport(viewport)))
    assert image.size == size


def test_viewport_enlarges_small_images_only_up_to_the_viewport() -> None:
    image = opened(render_frame(load("rtdose.dcm"), 1, "image/png", parse_viewport("40,20")))
    assert image.size == (20, 20)


def test_viewport_source_region_crops() -> None:
    ds = load("MR_small.dcm")
    whole = png(ds)
    quadrant = png(ds, viewport="32,32,0,0,32,32")
    assert np.abs(quadrant.astype(int) - whole[:32, :32].astype(int)).max() <= 1


def test_viewport_negative_extent_flips() -> None:
    ds = load("MR_small.dcm")
    whole = png(ds)
    assert np.abs(png(ds, viewport="64,64,0,0,-64,").astype(int) - whole[:, ::-1]).max() <= 1
    assert np.abs(png(ds, viewport="64,64,,,,-64").astype(int) - whole[::-1, :]).max() <= 1


def test_viewport_source_region_outside_the_image() -> None:
    with pytest.raises(InvalidArgument, match="outside"):
        render_frame(load("MR_small.dcm"), 1, "image/png", parse_viewport("10,10,64,0,,"))


# --- output formats and errors ----------------------------------------------------------------


@pytest.mark.parametrize("media_type", RENDER_MEDIA_TYPES)
def test_output_decodes_in_the_requested_format(media_type: str) -> None:
    image = opened(render_frame(load("MR_small.dcm"), 1, media_type))
    assert image.format is not None and Image.MIME[image.format] == media_type
    assert (image.mode, image.size) == ("L", (64, 64))


def test_media_type_is_case_insensitive() -> None:
    assert opened(render_frame(load("MR_small.dcm"), 1, "Image/PNG")).format == "PNG"


@pytest.mark.parametrize("media_type", ["image/gif", "application/dicom", "image/*", ""])
def test_unsupported_media_type(media_type: str) -> None:
    with pytest.raises(NotAcceptable):
        render_frame(load("MR_small.dcm"), 1, media_type)


def test_jpeg_quality_changes_size_and_is_validated() -> None:
    ds = load("examples_rgb_color.dcm")
    small = render_frame(ds, 1, "image/jpeg", quality=10)
    large = render_frame(ds, 1, "image/jpeg", quality=95)
    assert len(small) < len(large)
    for quality in (0, 101):
        with pytest.raises(InvalidArgument, match="quality"):
            render_frame(ds, 1, "image/jpeg", quality=quality)


def test_missing_pixel_data() -> None:
    ds = load("CT_small.dcm")
    del ds.PixelData
    with pytest.raises(InvalidDicom, match="pixel data"):
        render_frame(ds, 1, "image/jpeg")


def test_undecodable_transfer_syntax_is_not_acceptable() -> None:
    ds = load("MR_small.dcm")
    ds.file_meta.TransferSyntaxUID = UID("1.2.3.4.5")
    with pytest.raises(NotAcceptable, match=r"1\.2\.3\.4\.5"):
        render_frame(ds, 1, "image/png")


def test_unsupported_photometric_interpretation_is_not_acceptable() -> None:
    ds = load("MR_small.dcm")
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(NotAcceptable, match="HSV"):
        render_frame(ds, 1, "image/png")


def test_palette_without_a_palette_is_invalid() -> None:
    ds = load("MR_small.dcm")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    with pytest.raises(InvalidDicom, match="palette"):
        render_frame(ds, 1, "image/png")


def test_importing_the_module_loads_no_imaging_libraries() -> None:
    code = (
        "import sys, shared.dicom.render; "
        "print(sorted(m for m in ('numpy', 'PIL', 'pydicom') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
