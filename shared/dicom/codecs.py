"""Transfer-syntax transcoding and frame decoding on top of pydicom and its pixel plugins."""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset

from shared.dicom import frame_codecs
from shared.dicom.frame_codecs import (
    DEFLATED_EXPLICIT_VR_LE,
    DEFLATED_IMAGE_FRAME,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    IMPLICIT_VR_LE,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_SYNTAXES,
    JPEG_XL,
    JPEG_XL_LOSSLESS,
    JPEG_XL_RECOMPRESSION,
    LITTLE_ENDIAN_NATIVE,
    NATIVE_SYNTAXES,
    RLE_LOSSLESS,
    Layout,
)
from shared.dicom.parse import (
    DOUBLE_FLOAT_PIXEL_DATA,
    FLOAT_PIXEL_DATA,
    PIXEL_DATA,
    native_frame_bits,
    read_transfer_syntax,
)
from shared.errors import DicomStoreError, InvalidArgument, InvalidDicom, NotAcceptable

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFLATED_EXPLICIT_VR_LE",
    "DEFLATED_IMAGE_FRAME",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "HTJ2K",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
    "IMPLICIT_VR_LE",
    "JPEG_2000",
    "JPEG_2000_LOSSLESS",
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "JPEG_LOSSLESS",
    "JPEG_LOSSLESS_SV1",
    "JPEG_LS_LOSSLESS",
    "JPEG_LS_NEAR_LOSSLESS",
    "JPEG_SYNTAXES",
    "JPEG_XL",
    "JPEG_XL_LOSSLESS",
    "JPEG_XL_RECOMPRESSION",
    "LITTLE_ENDIAN_NATIVE",
    "NATIVE_SYNTAXES",
    "RLE_LOSSLESS",
    "byteswap",
    "can_encode_frames",
    "can_transcode",
    "decode_frame",
    "decoded_header",
    "decoded_photometric",
    "encode_frames",
    "frames_from_instance",
    "mark_lossy",
    "native_header",
    "needs_extended_offsets",
    "pixel_swap_width",
    "set_encoded_layout",
    "transcode_instance",
    "write_native_header",
    "write_part10",
]

logger = logging.getLogger(__name__)

_SWAP_WIDTHS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
# The largest offset a Basic Offset Table (32-bit) can hold.
MAX_BASIC_OFFSET = 2**32 - 1


def can_transcode(source_ts: str, target_ts: str, dataset: Dataset) -> bool:
    """True when an instance with this header can be converted from source_ts to target_ts."""
    return _refusal(source_ts, target_ts, dataset) is None


def transcode_instance(data: BinaryIO, target_ts: str) -> bytes:
    """Return the whole Part-10 instance re-encoded in target_ts (input bytes when unchanged).

    Every frame of a multi-frame instance is converted; NotAcceptable when impossible.
    """
    source_ts = read_transfer_syntax(data)
    if source_ts == target_ts:
        data.seek(0)
        return data.read()
    dataset = _read_full(data)
    _require_transcodable(source_ts, target_ts, dataset)
    logger.debug("transcoding an instance from %s to %s", source_ts, target_ts)
    if target_ts == JPEG_XL_RECOMPRESSION and _pixel_tag(dataset) is not None:
        _recompress_jpeg(dataset)
    else:
        _to_native_little_endian(dataset, source_ts)
        if target_ts not in LITTLE_ENDIAN_NATIVE and _pixel_tag(dataset) is not None:
            _compress(dataset, target_ts)
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID(target_ts)
    return _write(dataset)


def write_part10(dataset: Dataset) -> bytes:
    """The Part-10 bytes of a data set, written exactly as transcode_instance writes its result."""
    return _write(dataset)


def read_stored_header(stored_bytes: bytes, source_ts: str) -> Dataset | None:
    """The elements before the pixel data of a stored instance, if they say they are source_ts.

    None, for the caller's whole-instance path, when they do not parse alone or name another
    transfer syntax.
    """
    try:
        # force: uploads without the 128-byte preamble are stored as sent (validated at ingest).
        header = pydicom.dcmread(io.BytesIO(stored_bytes), force=True, stop_before_pixels=True)
    except Exception as exc:  # untrusted bytes: pydicom raises many exception types
        logger.info("the header does not parse alone (%s): transcoding the whole instance", exc)
        return None
    if str(header.file_meta.get("TransferSyntaxUID", "")) != source_ts:
        return None
    return header


def write_native_header(header: Dataset, source_ts: str, target_ts: str) -> bytes:
    """What transcode_instance writes before the pixel data, for native to native targets.

    header holds the elements before the Pixel Data (which must be the last element), as
    read from an instance in source_ts; it is changed as the whole instance would be.
    """
    native_header(header, source_ts)
    header.file_meta.TransferSyntaxUID = pydicom.uid.UID(target_ts)
    return _write(header)


def native_header(header: Dataset, source_ts: str) -> None:
    """Change a header without pixel data from a native source_ts as the whole transcode
    changes it on the way to native little endian (big endian OW/OF/... values swapped)."""
    _to_native_little_endian(header, source_ts)


def set_encoded_layout(dataset: Dataset, layout: Layout, target_ts: str) -> None:
    """The pixel attributes transcode_instance writes for native frames in layout encoded in
    target_ts (the lossy compression marks aside)."""
    if target_ts != DEFLATED_IMAGE_FRAME:  # deflated frames keep their native arrangement
        photometric = frame_codecs.encoded_photometric(layout, target_ts)
        _set_layout(dataset, replace(layout, photometric=photometric, planar=0))


def decode_frame(
    encoded: bytes, dataset: Dataset, transfer_syntax: str, frame_number: int
) -> bytes:
    """Return one frame's native little-endian pixel bytes from its stored bytes.

    `encoded` is the frame as stored (its fragments joined, or its native slice); the result
    is what the frame becomes in an Explicit VR Little Endian transcoding of the instance:
    `decoded_header(dataset, transfer_syntax)` describes it (encapsulated YCbCr becomes RGB,
    interleaved).
    """
    _check_frame_numbers(dataset, [frame_number])
    if transfer_syntax in LITTLE_ENDIAN_NATIVE:
        return bytes(encoded)
    _require_transcodable(transfer_syntax, EXPLICIT_VR_LE, dataset)
    if transfer_syntax == EXPLICIT_VR_BE:
        return byteswap(bytes(encoded), _pixel_swap_width(dataset))
    return _decode_encapsulated_frame(encoded, dataset, transfer_syntax, frame_number)


def decoded_photometric(header: Dataset, source_ts: str) -> str:
    """PhotometricInterpretation of the frames decode_frame returns for this stored header."""
    return str(decoded_header(header, source_ts).get("PhotometricInterpretation", ""))


def decoded_header(header: Dataset, source_ts: str) -> Dataset:
    """A copy of header describing decode_frame's output (photometric, planar configuration).

    Pass it to encode_frames with frames from decode_frame.
    """
    copy = Dataset()
    copy.update(header)  # shares the elements: changed ones are replaced, never mutated
    if hasattr(header, "file_meta"):
        copy.file_meta = header.file_meta
    layout = frame_codecs.layout_of(header)
    if layout is None:
        return copy
    decoded = frame_codecs.decoded_layout(layout, source_ts)
    if "PhotometricInterpretation" in header:
        copy.add_new("PhotometricInterpretation", "CS", decoded.photometric)
    if "PlanarConfiguration" in header:
        copy.add_new("PlanarConfiguration", "US", decoded.planar)
    return copy


def can_encode_frames(header: Dataset, media_type: str, transfer_syntax: str | None) -> bool:
    """True when native frames described by header can be sent as media_type / syntax."""
    return frame_codecs.frames_refusal(header, media_type, transfer_syntax) is None


def encode_frames(
    frames_native: list[bytes],
    header: Dataset,
    target_media_type: str,
    target_ts: str | None,
) -> list[bytes]:
    """Native little-endian frames in a frame media type (spec 4.3); header describes them.

    Targets: application/octet-stream (Explicit VR LE, unchanged), image/jpeg (.50 default,
    .51, .57, .70), image/png (raw values, see frame_codecs), image/jls, image/jp2,
    image/jphc, image/jxl (.110, .112), image/dicom-rle and application/x-deflate. A None
    target_ts picks the media type's first syntax. NotAcceptable when impossible.
    """
    return frame_codecs.encode_frames(frames_native, header, target_media_type, target_ts)


def frames_from_instance(
    data: BinaryIO, frame_numbers: list[int], target_ts: str | None
) -> list[bytes]:
    """Extract frames (1-based numbers) from a whole instance; target None keeps them as stored."""
    dataset = _read_full(data)
    source_ts = str(dataset.file_meta.TransferSyntaxUID)
    pixel_tag = _pixel_tag(dataset)
    if pixel_tag is None:
        raise InvalidArgument("the instance has no pixel data, so it has no frames")
    _check_frame_numbers(dataset, frame_numbers)
    if target_ts is None or target_ts == source_ts:
        return [_stored_frame(dataset, source_ts, number) for number in frame_numbers]
    _require_transcodable(source_ts, target_ts, dataset)
    if target_ts in LITTLE_ENDIAN_NATIVE:
        return [_native_frame(dataset, source_ts, number) for number in frame_numbers]
    if target_ts == JPEG_XL_RECOMPRESSION:
        return [
            _recompress_frame(_stored_frame(dataset, source_ts, number), number)
            for number in frame_numbers
        ]
    _to_native_little_endian(dataset, source_ts)
    layout = _require_layout(dataset)
    pixels = _native_pixels(dataset)
    return [
        _encode_frame(_slice_native(dataset, pixels, number), layout, target_ts, number)
        for number in frame_numbers
    ]


# --- rules -------------------------------------------------------------------------------


def _require_transcodable(source_ts: str, target_ts: str, dataset: Dataset) -> None:
    reason = _refusal(source_ts, target_ts, dataset)
    if reason is not None:
        raise NotAcceptable(f"cannot transcode from {source_ts} to {target_ts}: {reason}")


def _refusal(source_ts: str, target_ts: str, dataset: Dataset) -> str | None:
    """Why the conversion is impossible, or None when it is possible."""
    if source_ts == target_ts:
        return None
    samples, bits = _int(dataset, "SamplesPerPixel") or 1, _int(dataset, "BitsAllocated") or 0
    pixel_kind = _pixel_kind(dataset)
    has_pixels = pixel_kind is not None
    if has_pixels and target_ts in JPEG_SYNTAXES and samples > 1 and bits > 8:
        return "non-monochrome images with more than 8 bits cannot be stored as JPEG"
    if target_ts not in LITTLE_ENDIAN_NATIVE and not frame_codecs.encoder_available(target_ts):
        return "no encoder is available for the target transfer syntax"
    if not has_pixels:
        return None
    if source_ts not in NATIVE_SYNTAXES and not frame_codecs.decoder_available(source_ts):
        return "no decoder is available for the source transfer syntax"
    native_only = bits == 1 or pixel_kind != PIXEL_DATA
    both_native = source_ts in NATIVE_SYNTAXES and target_ts in NATIVE_SYNTAXES
    if native_only and not both_native:
        return "1-bit and float pixel data convert only between uncompressed syntaxes"
    if source_ts == EXPLICIT_VR_BE and _pixel_swap_width(dataset) is None:
        return "the big endian pixel data has no usable BitsAllocated"
    if target_ts in LITTLE_ENDIAN_NATIVE:
        return None
    if target_ts == JPEG_XL_RECOMPRESSION:
        return _recompression_refusal(source_ts)
    layout = frame_codecs.layout_of(dataset)
    if layout is None:
        return "the image pixel attributes (Rows, Columns, BitsAllocated) are missing"
    return frame_codecs.encode_refusal(frame_codecs.decoded_layout(layout, source_ts), target_ts)


def _recompression_refusal(source_ts: str) -> str | None:
    if source_ts == JPEG_BASELINE:
        return None
    return f"JPEG XL JPEG recompression applies only to {JPEG_BASELINE} (JPEG baseline) frames"


# --- reading, writing, pixel helpers -----------------------------------------------------


def _read_full(data: BinaryIO) -> Dataset:
    read_transfer_syntax(data)  # rejects non-Part-10 input with a clear message
    data.seek(0)
    try:
        # force: the prefix check above accepted a file meta group without a preamble.
        return pydicom.dcmread(data, force=True)
    except Exception as exc:  # untrusted bytes: pydicom raises many exception types
        raise InvalidDicom(f"could not parse DICOM data set: {exc}") from exc


def _write(dataset: Dataset) -> bytes:
    # Convert every raw element first: when the data set's real VR encoding contradicts its
    # transfer syntax (pydicom detects and reads it anyway) dcmwrite would copy raw
    # implicit-VR elements into an explicit-VR stream and fail.
    for _ in dataset.iterall():
        pass
    buffer = io.BytesIO()
    try:
        if str(dataset.file_meta.TransferSyntaxUID) in frame_codecs.UNREGISTERED_SYNTAXES:
            _write_explicit_le(buffer, dataset)
        else:
            pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    except (AttributeError, ValueError, TypeError) as exc:  # e.g. no SOP UIDs for the meta
        raise InvalidDicom(f"cannot re-encode the instance: {exc}") from exc
    return buffer.getvalue()


def _write_explicit_le(buffer: io.BytesIO, dataset: Dataset) -> None:
    """What dcmwrite does for explicit VR little endian, for syntaxes pydicom 3.0 refuses."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    meta = dataset.file_meta
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    stream = DicomBytesIO()
    stream.write((dataset.preamble or b"\0" * 128) + b"DICM")
    write_file_meta_info(stream, meta, enforce_standard=True)
    stream.is_little_endian, stream.is_implicit_VR = True, False
    write_dataset(stream, dataset)
    buffer.write(stream.getvalue())


def _int(dataset: Dataset, keyword: str) -> int | None:
    try:
        value = dataset.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _pixel_tag(dataset: Dataset) -> int | None:
    for tag in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA):
        if tag in dataset:
            return tag
    return None


def _pixel_kind(dataset: Dataset) -> int | None:
    """The pixel element a header describes; a header without it but with an image size
    (for example one rebuilt from stored metadata) is taken to describe Pixel Data."""
    tag = _pixel_tag(dataset)
    if tag is None and "Rows" in dataset and "Columns" in dataset:
        return PIXEL_DATA
    return tag


def _require_layout(dataset: Dataset) -> Layout:
    layout = frame_codecs.layout_of(dataset)
    if layout is None:
        raise NotAcceptable("cannot encode frames: the image pixel attributes are missing")
    return layout


def _frame_count(dataset: Dataset) -> int:
    return max(_int(dataset, "NumberOfFrames") or 1, 1)


def _check_frame_numbers(dataset: Dataset, frame_numbers: list[int]) -> None:
    count = _frame_count(dataset)
    for number in frame_numbers:
        if not 1 <= number <= count:
            raise InvalidArgument(
                f"frame number {number} is out of range: the instance has {count} frame(s)"
            )


def _pixel_swap_width(dataset: Dataset) -> int | None:
    """Bytes per swapped unit of the pixel data when converting big endian to little."""
    tag = _pixel_tag(dataset)
    if tag == FLOAT_PIXEL_DATA:
        return 4
    if tag == DOUBLE_FLOAT_PIXEL_DATA:
        return 8
    element = dataset.get_item(PIXEL_DATA, keep_deferred=True)
    vr = None if element is None else str(element.VR)
    return pixel_swap_width(vr, _int(dataset, "BitsAllocated"))


def pixel_swap_width(vr: str | None, bits_allocated: int | None) -> int | None:
    """Bytes per swapped unit of big endian Pixel Data of this VR (None: a header without it)."""
    if vr == "OB":
        return 1
    if bits_allocated is None:
        return None
    if vr is None and bits_allocated <= 8:
        return 1  # header without the element: assume the usual OB for 8-bit pixels
    # OW words are 16-bit, so 1- and 8-bit pixels packed in OW are swapped in pairs too.
    return max(2, bits_allocated // 8) if bits_allocated in (1, 8, 16, 32, 64) else None


def byteswap(data: bytes, width: int | None) -> bytes:
    """data with each whole `width`-byte unit reversed (a shorter tail stays as it is)."""
    if not width or width == 1 or not data:
        return data
    import numpy as np

    usable = len(data) - len(data) % width
    swapped = np.frombuffer(data, dtype=np.uint8, count=usable).reshape(-1, width)[:, ::-1]
    return swapped.tobytes() + data[usable:]


def _little_endian_bytes(array: np.ndarray) -> bytes:
    return bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())


def _to_native_little_endian(dataset: Dataset, source_ts: str) -> None:
    """Turn the pixel data (and any big endian OW/OF/OD values) into native little endian."""
    if source_ts == EXPLICIT_VR_BE:
        _swap_binary_values(dataset)
    elif source_ts not in NATIVE_SYNTAXES and _pixel_tag(dataset) is not None:
        _decompress(dataset, source_ts)
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID(EXPLICIT_VR_LE)


def _swap_binary_values(dataset: Dataset) -> None:
    # dcmwrite re-encodes numbers but copies OW/OF/OD/OL/OV bytes verbatim (see its docs).
    pixel_width = _pixel_swap_width(dataset)
    for element in dataset.iterall():
        width = _SWAP_WIDTHS.get(str(element.VR))
        if element.tag in (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA):
            width = pixel_width if element.tag == PIXEL_DATA else width
        if width and isinstance(element.value, bytes):
            element.value = byteswap(element.value, width)


def _decompress(dataset: Dataset, source_ts: str) -> None:
    from pydicom.pixels import decompress

    try:
        if source_ts in frame_codecs.UNREGISTERED_SYNTAXES:
            _decompress_frame_by_frame(dataset, source_ts)
        else:
            decompress(dataset, as_rgb=True, generate_instance_uid=False)
    except DicomStoreError:
        raise
    except Exception as exc:  # decoder plugins raise RuntimeError/ValueError on bad streams
        raise NotAcceptable(
            f"cannot transcode from {source_ts}: the pixel data could not be decoded ({exc})"
        ) from exc
    # Offsets into encapsulated data mean nothing once the pixel data is native.
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in dataset:
            del dataset[keyword]


def _decompress_frame_by_frame(dataset: Dataset, source_ts: str) -> None:
    """decompress() for the syntaxes pydicom does not know, with the same result."""
    layout = _require_layout(dataset)
    frames = [
        frame_codecs.decode_unregistered_frame(
            _stored_frame(dataset, source_ts, number), layout, source_ts
        )
        for number in range(1, _frame_count(dataset) + 1)
    ]
    pixels = b"".join(frames)
    dataset.PixelData = pixels + b"\0" * (len(pixels) % 2)
    element = dataset["PixelData"]
    element.is_undefined_length = False
    element.VR = "OB" if layout.bits_allocated <= 8 else "OW"
    _set_layout(dataset, frame_codecs.decoded_layout(layout, source_ts))


def _set_layout(dataset: Dataset, layout: Layout) -> None:
    dataset.PhotometricInterpretation = layout.photometric
    if layout.samples > 1:
        dataset.PlanarConfiguration = layout.planar


def _compress(dataset: Dataset, target_ts: str) -> None:
    """Encode every frame of the native little endian pixel data in target_ts."""
    layout = _require_layout(dataset)
    pixels = _native_pixels(dataset)
    native_size = len(pixels)
    encoded = [
        _encode_frame(_slice_native(dataset, pixels, number), layout, target_ts, number)
        for number in range(1, _frame_count(dataset) + 1)
    ]
    _set_encapsulated(dataset, encoded)
    set_encoded_layout(dataset, layout, target_ts)
    mark_lossy(dataset, target_ts, native_size, sum(map(len, encoded)))


def _encode_frame(frame: bytes, layout: Layout, target_ts: str, number: int) -> bytes:
    try:
        return frame_codecs.encode_native_frame(frame, layout, target_ts)
    except Exception as exc:  # encoder libraries raise RuntimeError/ValueError and their own
        raise NotAcceptable(
            f"cannot transcode frame {number} to {target_ts}: the pixel data could not be "
            f"encoded ({exc})"
        ) from exc


def _set_encapsulated(dataset: Dataset, frames: list[bytes]) -> None:
    from pydicom.encaps import encapsulate, encapsulate_extended

    if needs_extended_offsets([len(frame) for frame in frames]):
        pixel_data, offsets, lengths = encapsulate_extended(frames)
        dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths = offsets, lengths
    else:
        # An empty Basic Offset Table (one fragment per frame locates the frames): offsets
        # known only once every frame is encoded would keep a streamed transcode from
        # sending its first frame before its last is encoded (see streaming_encode).
        pixel_data = encapsulate(frames, has_bot=False)
    dataset.PixelData = pixel_data
    element = dataset["PixelData"]
    element.is_undefined_length = True
    element.VR = "OB"


def needs_extended_offsets(frame_lengths: list[int]) -> bool:
    """True when transcode_instance writes an Extended Offset Table for these encoded frames."""
    # PS3.5 A.4: a Basic Offset Table holds 32-bit offsets; beyond that use the extended one.
    return sum(length + 8 for length in frame_lengths[:-1]) > MAX_BASIC_OFFSET


def _recompress_jpeg(dataset: Dataset) -> None:
    """Repack every stored JPEG baseline frame as JPEG XL: the pixels are untouched."""
    source_ts = str(dataset.file_meta.TransferSyntaxUID)
    frames = [
        _recompress_frame(_stored_frame(dataset, source_ts, number), number)
        for number in range(1, _frame_count(dataset) + 1)
    ]
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in dataset:
            del dataset[keyword]
    _set_encapsulated(dataset, frames)


def _recompress_frame(frame: bytes, number: int) -> bytes:
    try:
        return frame_codecs.recompress_jpeg(frame)
    except Exception as exc:  # libjxl refuses JPEG streams it cannot reconstruct
        raise NotAcceptable(
            f"cannot transcode frame {number} to {JPEG_XL_RECOMPRESSION}: {exc}"
        ) from exc


def mark_lossy(dataset: Dataset, target_ts: str, native_size: int, encoded_size: int) -> None:
    """The lossy compression marks transcode_instance writes for frames encoded in target_ts
    (none for a lossless one): native_size bytes of native Pixel Data became encoded_size."""
    method = frame_codecs.LOSSY_METHODS.get(target_ts)
    if method:
        _mark_lossy(dataset, method, native_size / max(encoded_size, 1))


def _mark_lossy(dataset: Dataset, method: str, ratio: float) -> None:
    """Record a lossy compression step as PS3.3 C.7.6.1.1.5 requires."""
    dataset.LossyImageCompression = "01"
    ratios = _values(dataset, "LossyImageCompressionRatio")
    methods = _values(dataset, "LossyImageCompressionMethod")
    dataset.LossyImageCompressionRatio = [*ratios, f"{ratio:.4g}"[:16]]
    dataset.LossyImageCompressionMethod = [*methods, method]


def _values(dataset: Dataset, keyword: str) -> list[str]:
    value = dataset.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    return [str(item) for item in value]


def _pixel_options(dataset: Dataset, **overrides: Any) -> dict[str, Any]:
    from pydicom.pixels.utils import as_pixel_options

    options = as_pixel_options(dataset, **overrides)
    options.pop("extended_offsets", None)
    return options


def _decode_encapsulated_frame(
    encoded: bytes, dataset: Dataset, transfer_syntax: str, frame_number: int
) -> bytes:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    try:
        if transfer_syntax in frame_codecs.UNREGISTERED_SYNTAXES:
            layout = _require_layout(dataset)
            return frame_codecs.decode_unregistered_frame(bytes(encoded), layout, transfer_syntax)
        # as_rgb: YCbCr becomes RGB exactly as in a whole-instance decompression
        options = _pixel_options(dataset, number_of_frames=1, as_rgb=True)
        array, _ = get_decoder(transfer_syntax).as_array(encapsulate([bytes(encoded)]), **options)
    except DicomStoreError:
        raise
    except Exception as exc:  # decoder plugins raise RuntimeError/ValueError on bad streams
        raise NotAcceptable(
            f"cannot transcode frame {frame_number} from {transfer_syntax} to {EXPLICIT_VR_LE}: "
            f"the frame could not be decoded ({exc})"
        ) from exc
    return _little_endian_bytes(array)


def _native_pixels(dataset: Dataset) -> bytes:
    tag = _pixel_tag(dataset)
    return bytes(dataset[tag].value) if tag is not None else b""


def _slice_native(dataset: Dataset, pixels: bytes, frame_number: int) -> bytes:
    frame_bits = native_frame_bits(dataset, _pixel_tag(dataset) or PIXEL_DATA)
    if frame_bits is None:
        raise NotAcceptable("cannot extract frames: the image pixel attributes are missing")
    start = (frame_number - 1) * frame_bits
    if start + frame_bits > len(pixels) * 8:
        raise NotAcceptable("cannot extract frames: the pixel data is shorter than expected")
    if frame_bits % 8 == 0 and start % 8 == 0:
        return pixels[start // 8 : (start + frame_bits) // 8]
    import numpy as np

    # PS3.5 8.1.1: bit-packed pixels fill each byte from its least significant bit.
    bits = np.unpackbits(np.frombuffer(pixels, dtype=np.uint8), bitorder="little")
    return bytes(np.packbits(bits[start : start + frame_bits], bitorder="little").tobytes())


def _stored_frame(dataset: Dataset, source_ts: str, frame_number: int) -> bytes:
    if source_ts in NATIVE_SYNTAXES:
        return _slice_native(dataset, _native_pixels(dataset), frame_number)
    from pydicom.encaps import get_frame

    extended = None
    if "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset:
        extended = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths)
    try:
        return bytes(
            get_frame(
                dataset.PixelData,
                frame_number - 1,
                number_of_frames=_frame_count(dataset),
                extended_offsets=extended,
            )
        )
    except DicomStoreError:
        raise
    except Exception as exc:  # pydicom raises ValueError when frame boundaries are unclear
        raise NotAcceptable(f"cannot locate frame {frame_number}: {exc}") from exc


def _native_frame(dataset: Dataset, source_ts: str, frame_number: int) -> bytes:
    if source_ts == EXPLICIT_VR_BE:
        # Swap the whole value first: packed 1-bit frames need not start on a word boundary.
        swapped = byteswap(_native_pixels(dataset), _pixel_swap_width(dataset))
        return _slice_native(dataset, swapped, frame_number)
    stored = _stored_frame(dataset, source_ts, frame_number)
    if source_ts in NATIVE_SYNTAXES:
        return stored
    return _decode_encapsulated_frame(stored, dataset, source_ts, frame_number)
