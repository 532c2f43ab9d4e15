"""Per-frame pixel codecs: native frames to and from each transfer syntax and frame media type."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from shared.dicom.parse import DOUBLE_FLOAT_PIXEL_DATA, FLOAT_PIXEL_DATA
from shared.errors import NotAcceptable

if TYPE_CHECKING:
    import numpy as np

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"
JPEG_XL_RECOMPRESSION = "1.2.840.10008.1.2.4.111"
JPEG_XL = "1.2.840.10008.1.2.4.112"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"

NATIVE_SYNTAXES = frozenset(
    {IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE}
)
# Native syntaxes we write; big endian is retired and no Google retrieve syntax.
LITTLE_ENDIAN_NATIVE = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE})
JPEG_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})
J2K_SYNTAXES = frozenset({JPEG_2000_LOSSLESS, JPEG_2000})
HTJ2K_SYNTAXES = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})
JPEG_XL_SYNTAXES = frozenset({JPEG_XL_LOSSLESS, JPEG_XL_RECOMPRESSION, JPEG_XL})
# pydicom 3.0 knows neither: we decode their frames ourselves and write their files by hand.
UNREGISTERED_SYNTAXES = JPEG_XL_SYNTAXES | {DEFLATED_IMAGE_FRAME}

PNG = "image/png"
# Frame media types (spec 4.3) and the syntaxes each may carry; the first is the default.
MEDIA_TYPE_SYNTAXES: dict[str, tuple[str, ...]] = {
    "application/octet-stream": (EXPLICIT_VR_LE,),
    "image/jpeg": (JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1),
    PNG: (),
    "image/jls": (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS),
    "image/jp2": (JPEG_2000_LOSSLESS, JPEG_2000),
    "image/jphc": (HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K),
    "image/jxl": (JPEG_XL_LOSSLESS, JPEG_XL),
    "image/dicom-rle": (RLE_LOSSLESS,),
    "application/x-deflate": (DEFLATED_IMAGE_FRAME,),
}

# LossyImageCompressionMethod defined terms (PS3.3 C.7.6.1.1.5.1) of the lossy targets.
LOSSY_METHODS = {
    JPEG_BASELINE: "ISO_10918_1",
    JPEG_EXTENDED: "ISO_10918_1",
    JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1",
    JPEG_2000: "ISO_15444_1",
    HTJ2K: "ISO_15444_15",
    JPEG_XL: "ISO_18181_1",
}
JPEG_QUALITY = 90
J2K_COMPRESSION_RATIO = 10
JLS_MAX_ERROR = 2
# OpenJPH quantisation step, relative to the sample range; about 1% mean error on CT.
HTJ2K_QSTEP = 0.001
# libjxl butteraugli distance: half its "visually lossless" 1.0, as medical images want.
JPEG_XL_DISTANCE = 0.5

_SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})
_YBR_DECODED_AS_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "XYB"})
# Targets whose encoders take RGB and write their own colour transform (or none).
_RGB_INPUT_TARGETS = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_XL, PNG})
_ProfileType = tuple[str, int, tuple[int, ...], tuple[int, ...], range]
_HTJ2K_PROFILE: list[_ProfileType] = [
    # PS3.5 Table 8.2.4-1 as for JPEG 2000, limited to the 16 bits pydicom's decoder reads back.
    ("MONOCHROME1", 1, (0, 1), (8, 16), range(1, 17)),
    ("MONOCHROME2", 1, (0, 1), (8, 16), range(1, 17)),
    ("PALETTE COLOR", 1, (0,), (8, 16), range(1, 17)),
    ("RGB", 3, (0,), (8, 16), range(1, 17)),
    ("YBR_FULL", 3, (0,), (8, 16), range(1, 17)),
]
_JPEG_XL_PROFILE: list[_ProfileType] = [
    # libjxl encodes unsigned integer samples of at most 16 bits.
    ("MONOCHROME1", 1, (0,), (8, 16), range(1, 17)),
    ("MONOCHROME2", 1, (0,), (8, 16), range(1, 17)),
    ("RGB", 3, (0,), (8, 16), range(1, 17)),
]
_OWN_PROFILES: dict[str, list[_ProfileType]] = {
    HTJ2K_LOSSLESS: _HTJ2K_PROFILE,
    HTJ2K_LOSSLESS_RPCL: _HTJ2K_PROFILE,
    HTJ2K: [p for p in _HTJ2K_PROFILE if p[0] != "PALETTE COLOR"],
    JPEG_XL_LOSSLESS: _JPEG_XL_PROFILE,
    JPEG_XL: _JPEG_XL_PROFILE,
    PNG: [
        ("MONOCHROME1", 1, (0, 1), (8, 16, 32), range(1, 17)),
        ("MONOCHROME2", 1, (0, 1), (8, 16, 32), range(1, 17)),
        ("PALETTE COLOR", 1, (0,), (8, 16), range(1, 17)),
        ("RGB", 3, (0,), (8,), range(1, 9)),
    ],
}


@dataclass(frozen=True)
class Layout:
    """The image pixel attributes that describe one native little-endian frame."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int
    floating: bool = False

    @property
    def frame_bytes(self) -> int:
        samples = self.samples
        if samples == 3 and self.photometric in _SUBSAMPLED:
            samples = 2  # PS3.3 C.7.6.3.1.2: two chroma samples shared by each pixel pair
        return (self.rows * self.columns * samples * self.bits_allocated + 7) // 8

    def options(self) -> dict[str, Any]:
        """pydicom pixel options for one frame in this layout."""
        options: dict[str, Any] = {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": int(self.signed),
            "photometric_interpretation": self.photometric,
            "number_of_frames": 1,
            "pixel_keyword": "PixelData",
        }
        if self.samples > 1:
            options["planar_configuration"] = self.planar
        return options


def layout_of(dataset: Dataset) -> Layout | None:
    """The frame layout a header describes, or None when its size attributes are missing."""
    rows, columns = _int(dataset, "Rows"), _int(dataset, "Columns")
    allocated = _int(dataset, "BitsAllocated")
    if not rows or not columns or not allocated:
        return None
    return Layout(
        rows=rows,
        columns=columns,
        samples=_int(dataset, "SamplesPerPixel") or 1,
        bits_allocated=allocated,
        bits_stored=_int(dataset, "BitsStored") or allocated,
        signed=_int(dataset, "PixelRepresentation") == 1,
        photometric=str(dataset.get("PhotometricInterpretation", "") or ""),
        planar=_int(dataset, "PlanarConfiguration") or 0,
        floating=FLOAT_PIXEL_DATA in dataset or DOUBLE_FLOAT_PIXEL_DATA in dataset,
    )


def decoded_layout(layout: Layout, source_ts: str) -> Layout:
    """The layout of a frame once decoded from source_ts (what decode_frame returns).

    Encapsulated frames decode interleaved, and YCbCr (and JPEG 2000 RCT/ICT, JPEG XL XYB)
    colour decodes to RGB, as pydicom's decompress does; native frames stay as stored.
    """
    if source_ts in NATIVE_SYNTAXES or source_ts == DEFLATED_IMAGE_FRAME:
        return layout
    rgb = layout.samples == 3 and layout.photometric in _YBR_DECODED_AS_RGB
    return replace(layout, photometric="RGB" if rgb else layout.photometric, planar=0)


def _int(dataset: Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


# --- what can be encoded -----------------------------------------------------------------


def encoder_available(target: str) -> bool:
    """True when this machine has an encoder for the target syntax (or PNG)."""
    if target in LITTLE_ENDIAN_NATIVE or target == DEFLATED_IMAGE_FRAME:
        return True
    if target in (JPEG_BASELINE, PNG):
        return _module_available("PIL")
    if target in (JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        return _imagecodecs_has("JPEG8")
    if target in HTJ2K_SYNTAXES:
        return _imagecodecs_has("HTJ2K")
    if target in JPEG_XL_SYNTAXES:
        return _imagecodecs_has("JPEGXL")
    from pydicom.pixels import get_encoder

    try:
        return bool(get_encoder(target).is_available)
    except NotImplementedError:
        return False


def decoder_available(source_ts: str) -> bool:
    """True when frames stored in source_ts can be decoded here."""
    if source_ts in NATIVE_SYNTAXES or source_ts == DEFLATED_IMAGE_FRAME:
        return True
    if source_ts in JPEG_XL_SYNTAXES:
        return _imagecodecs_has("JPEGXL")
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(source_ts).is_available)
    except NotImplementedError:
        return False


def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _imagecodecs_has(codec: str) -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(getattr(imagecodecs, codec, None), "available", False))


def encode_refusal(layout: Layout, target: str) -> str | None:
    """Why frames in `layout` (as decoded) cannot be encoded in target, or None if they can.

    `target` is a transfer syntax UID or PNG. Google's rules come first (spec 4.4).
    """
    if target in LITTLE_ENDIAN_NATIVE:
        return None
    if layout.floating or layout.bits_allocated == 1:
        return "1-bit and float pixel data convert only between uncompressed syntaxes"
    if target in JPEG_SYNTAXES and layout.samples > 1 and layout.bits_allocated > 8:
        return "non-monochrome images with more than 8 bits cannot be stored as JPEG"
    if target == JPEG_XL_RECOMPRESSION:
        return "JPEG XL JPEG recompression applies only to stored JPEG baseline frames"
    if not encoder_available(target):
        return "no encoder is available for the target transfer syntax"
    if target == DEFLATED_IMAGE_FRAME:
        return None
    return _engine_refusal(layout, target) or _profile_refusal(layout, target)


def _engine_refusal(layout: Layout, target: str) -> str | None:
    """Limits of the encoder libraries beyond the PS3.5 profiles."""
    if target in J2K_SYNTAXES:
        # pylibjpeg-openjpeg always asks openjpeg for 6 DWT resolutions.
        if min(layout.rows, layout.columns) < 32:
            return "openjpeg cannot encode images smaller than 32 pixels (it uses 6 resolutions)"
        if layout.bits_stored > 24:
            return "openjpeg cannot encode more than 24 bits stored"
    if target in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
        if layout.bits_stored < 2:
            return "libjpeg-turbo encodes lossless JPEG with 2 to 16 bits stored"
        if encoded_photometric(layout, target) == "YBR_FULL":
            return (
                "libjpeg-turbo labels lossless colour components RGB, so YBR_FULL would be misread"
            )
    if target in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS) and layout.rows * layout.columns < 256:
        # pyjpegls sizes its output buffer too tightly for tiny images (seen up to 10x10).
        return "pyjpegls cannot encode images of fewer than 256 pixels"
    return None


def encoded_photometric(layout: Layout, target: str) -> str:
    """PhotometricInterpretation of frames in `layout` once encoded in target."""
    if target == DEFLATED_IMAGE_FRAME:
        return layout.photometric  # the native bytes are only deflated
    photometric = "YBR_FULL" if layout.photometric == "YBR_FULL_422" else layout.photometric
    if layout.samples == 3 and photometric in ("RGB", "YBR_FULL"):
        if target in (JPEG_BASELINE, JPEG_EXTENDED):
            return "YBR_FULL_422"  # what Pillow and libjpeg-turbo write for colour
        if target in _RGB_INPUT_TARGETS:
            return "RGB"
    return photometric


def _profile_refusal(layout: Layout, target: str) -> str | None:
    """Check the frames against the PS3.5 encoding profiles (pydicom's, or ours)."""
    from pydicom.pixels.encoders.base import ENCODING_PROFILES
    from pydicom.uid import UID

    photometric = encoded_photometric(layout, target)
    profiles = _OWN_PROFILES.get(target) or ENCODING_PROFILES.get(UID(target), [])
    image = (photometric, layout.samples, int(layout.signed))
    for pi, spp, representations, allocated, stored in profiles:
        matches = (pi, spp) == image[:2] and image[2] in representations
        if matches and layout.bits_allocated in allocated and layout.bits_stored in stored:
            return None
    return (
        f"the target cannot encode {photometric or 'unknown'} images with {layout.samples} "
        f"samples, pixel representation {int(layout.signed)}, {layout.bits_allocated} bits "
        f"allocated and {layout.bits_stored} stored"
    )


# --- encoding ----------------------------------------------------------------------------


def encode_native_frame(frame: bytes, layout: Layout, target: str) -> bytes:
    """One native little-endian frame described by `layout` as a codestream (or PNG) in target.

    Call encode_refusal first: this raises whatever the encoder library raises.
    """
    if target == DEFLATED_IMAGE_FRAME:
        return deflate(frame)
    array, layout = _encoder_input(native_array(frame, layout), layout, target)
    return bytes(_ENCODERS[target](array, layout, target))


def deflate(data: bytes) -> bytes:
    """Raw deflate (RFC 1951, no zlib header) as Deflated Image Frame Compression uses."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def native_array(frame: bytes, layout: Layout) -> np.ndarray:
    """Pixel values of a native frame: masked to BitsStored, sign-extended, interleaved.

    YBR_FULL_422 frames come back upsampled to full YBR_FULL resolution.
    """
    from pydicom.pixels import get_decoder

    array, _ = get_decoder(EXPLICIT_VR_LE).as_array(frame, raw=True, **layout.options())
    return array


def _encoder_input(array: np.ndarray, layout: Layout, target: str) -> tuple[np.ndarray, Layout]:
    import numpy as np

    photometric = "YBR_FULL" if layout.photometric == "YBR_FULL_422" else layout.photometric
    if layout.samples == 3 and photometric == "YBR_FULL" and target in _RGB_INPUT_TARGETS:
        from pydicom.pixels import convert_color_space

        array, photometric = convert_color_space(array, "YBR_FULL", "RGB"), "RGB"
    return np.ascontiguousarray(array), replace(layout, photometric=photometric, planar=0)


def _encode_with_pydicom(array: np.ndarray, layout: Layout, target: str) -> bytes:
    from pydicom.pixels import get_encoder

    options: dict[str, Any] = {}
    if target == JPEG_2000:
        options["j2k_cr"] = [J2K_COMPRESSION_RATIO]
    elif target == JPEG_LS_NEAR_LOSSLESS:
        options["jls_error"] = JLS_MAX_ERROR
    return bytes(get_encoder(target).encode(array, **layout.options(), **options))


def _encode_with_pillow(array: np.ndarray, layout: Layout, target: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if target == PNG:
        _png_image(array, layout).save(buffer, format="PNG")
    else:
        # subsampling=1 is 4:2:2, matching the YBR_FULL_422 we record.
        Image.fromarray(array).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=1)
    return buffer.getvalue()


def _png_image(array: np.ndarray, layout: Layout) -> Any:
    """PNG holds raw values: no windowing, no palette lookup, no MONOCHROME1 inversion.

    PNG samples are unsigned, so signed pixels are offset by 2**(BitsStored-1) (offset
    binary), which keeps their order and is undone exactly by subtracting it again.
    """
    import numpy as np
    from PIL import Image

    values = array.astype(np.int64)
    if layout.signed:
        values += 1 << (layout.bits_stored - 1)
    dtype = np.uint8 if layout.bits_allocated == 8 else np.uint16
    return Image.fromarray(values.astype(dtype))


def _encode_with_libjpeg_turbo(array: np.ndarray, layout: Layout, target: str) -> bytes:
    import imagecodecs
    import numpy as np

    if target == JPEG_EXTENDED:
        return bytes(
            imagecodecs.jpeg8_encode(array, level=JPEG_QUALITY, bitspersample=layout.bits_stored)
        )
    # Lossless JPEG has no signed samples: DICOM stores the BitsStored-bit two's complement.
    unsigned = array.astype(np.int64) & ((1 << layout.bits_stored) - 1)
    if layout.bits_allocated == 8:
        samples, precision = unsigned.astype(np.uint8), layout.bits_stored
    else:
        # 16-bit samples need a precision above 8, or decoders return 8-bit samples.
        samples, precision = unsigned.astype(np.uint16), max(layout.bits_stored, 9)
    return bytes(
        imagecodecs.jpeg8_encode(samples, lossless=True, predictor=1, bitspersample=precision)
    )


def _encode_with_openjph(array: np.ndarray, layout: Layout, target: str) -> bytes:
    import imagecodecs

    # rgb=False: no colour transform, so RGB stays RGB (as pydicom does for JPEG 2000).
    if target == HTJ2K:
        return bytes(
            imagecodecs.htj2k_encode(array, level=HTJ2K_QSTEP, reversible=False, rgb=False)
        )
    options: dict[str, Any] = {}
    if target == HTJ2K_LOSSLESS_RPCL:
        # The RPCL syntax wants RPCL order (OpenJPH's default), TLM and a tile-part per level.
        options = {"tlm": True, "tilepart": imagecodecs.HTJ2K.TILEPART.RESOLUTIONS}
    return bytes(imagecodecs.htj2k_encode(array, reversible=True, rgb=False, **options))


def _encode_with_libjxl(array: np.ndarray, layout: Layout, target: str) -> bytes:
    import imagecodecs

    if target == JPEG_XL_LOSSLESS:
        return bytes(imagecodecs.jpegxl_encode(array, lossless=True))
    return bytes(imagecodecs.jpegxl_encode(array, distance=JPEG_XL_DISTANCE))


_Encoder = Callable[["np.ndarray", Layout, str], bytes]
_ENCODERS: dict[str, _Encoder] = {
    JPEG_BASELINE: _encode_with_pillow,
    PNG: _encode_with_pillow,
    JPEG_EXTENDED: _encode_with_libjpeg_turbo,
    JPEG_LOSSLESS: _encode_with_libjpeg_turbo,
    JPEG_LOSSLESS_SV1: _encode_with_libjpeg_turbo,
    JPEG_LS_LOSSLESS: _encode_with_pydicom,
    JPEG_LS_NEAR_LOSSLESS: _encode_with_pydicom,
    JPEG_2000_LOSSLESS: _encode_with_pydicom,
    JPEG_2000: _encode_with_pydicom,
    RLE_LOSSLESS: _encode_with_pydicom,
    HTJ2K_LOSSLESS: _encode_with_openjph,
    HTJ2K_LOSSLESS_RPCL: _encode_with_openjph,
    HTJ2K: _encode_with_openjph,
    JPEG_XL_LOSSLESS: _encode_with_libjxl,
    JPEG_XL: _encode_with_libjxl,
}


def recompress_jpeg(frame: bytes) -> bytes:
    """A JPEG baseline codestream losslessly repacked as JPEG XL (reconstructible bit for bit)."""
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode_jpeg(frame))


# --- decoding what pydicom cannot --------------------------------------------------------


def decode_unregistered_frame(encoded: bytes, layout: Layout, source_ts: str) -> bytes:
    """Native little-endian bytes of one JPEG XL or Deflated Image Frame codestream."""
    if source_ts == DEFLATED_IMAGE_FRAME:
        return zlib.decompress(encoded, -zlib.MAX_WBITS)[: layout.frame_bytes]
    import imagecodecs
    import numpy as np

    array = np.asarray(imagecodecs.jpegxl_decode(encoded))
    expected = (layout.rows, layout.columns, layout.samples)
    if array.size != layout.rows * layout.columns * layout.samples:
        raise ValueError(f"the codestream holds {array.shape} samples, expected {expected}")
    dtype = f"<{'i' if layout.signed else 'u'}{max(layout.bits_allocated // 8, 1)}"
    return array.astype(dtype).tobytes()


# --- frames in media types ---------------------------------------------------------------


def frame_target(media_type: str, transfer_syntax: str | None) -> str:
    """The syntax (or PNG) frames are encoded in for a media type; NotAcceptable if none."""
    media = media_type.split(";")[0].strip().lower()
    if media not in MEDIA_TYPE_SYNTAXES:
        raise NotAcceptable(f"frames cannot be returned as {media_type}")
    allowed = MEDIA_TYPE_SYNTAXES[media]
    if media == PNG:
        if transfer_syntax not in (None, "*"):
            raise NotAcceptable(f"{PNG} frames take no transfer syntax, not {transfer_syntax}")
        return PNG
    if transfer_syntax is None:
        return allowed[0]
    if transfer_syntax not in allowed:
        raise NotAcceptable(
            f"frames as {media} cannot use transfer syntax {transfer_syntax}; "
            f"allowed: {', '.join(allowed)}"
        )
    return transfer_syntax


def frames_refusal(header: Dataset, media_type: str, transfer_syntax: str | None) -> str | None:
    """Why native frames described by header cannot be sent as media_type, or None."""
    try:
        target = frame_target(media_type, transfer_syntax)
    except NotAcceptable as exc:
        return exc.message
    layout = layout_of(header)
    if layout is None:
        return "the image pixel attributes (Rows, Columns, BitsAllocated) are missing"
    if target == EXPLICIT_VR_LE:
        return None
    return encode_refusal(layout, target)


def encode_frames(
    frames_native: list[bytes], header: Dataset, media_type: str, transfer_syntax: str | None
) -> list[bytes]:
    """Native frames (as decode_frame returns them; header describes them) in a media type."""
    reason = frames_refusal(header, media_type, transfer_syntax)
    if reason is not None:
        raise NotAcceptable(
            f"cannot encode frames as {media_type} "
            f"(transfer syntax {transfer_syntax or 'default'}): {reason}"
        )
    target = frame_target(media_type, transfer_syntax)
    layout = layout_of(header)
    assert layout is not None  # frames_refusal checked it
    if target == EXPLICIT_VR_LE:
        return [bytes(frame) for frame in frames_native]
    return [
        _encode_checked(bytes(frame), layout, target, number)
        for number, frame in enumerate(frames_native, start=1)
    ]


def _encode_checked(frame: bytes, layout: Layout, target: str, number: int) -> bytes:
    if len(frame) < layout.frame_bytes:
        raise NotAcceptable(
            f"cannot encode frame {number} as {target}: it has {len(frame)} bytes, "
            f"the image attributes need {layout.frame_bytes}"
        )
    try:
        return encode_native_frame(frame[: layout.frame_bytes], layout, target)
    except Exception as exc:  # encoder libraries raise RuntimeError/ValueError and their own
        raise NotAcceptable(f"cannot encode frame {number} as {target}: {exc}") from exc
