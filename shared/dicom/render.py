"""Rendered images (8-bit JPEG or PNG) of DICOM frames for WADO-RS `/rendered` requests."""

from __future__ import annotations

import io
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import InvalidArgument, InvalidDicom, NotAcceptable

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from pydicom import Dataset

# numpy, Pillow and pydicom are imported inside functions: this module sits on the import
# path of every serverless cold start, and most requests never render anything.

logger = logging.getLogger(__name__)

RENDER_MEDIA_TYPES = ("image/jpeg", "image/png")
DEFAULT_RENDER_MEDIA_TYPE = "image/jpeg"
DEFAULT_JPEG_QUALITY = 90
# A viewport side above this would let one request allocate gigabytes when upscaling.
MAX_VIEWPORT_SIDE = 8192

_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GREY = ("MONOCHROME1", "MONOCHROME2")
_YBR = ("YBR_FULL", "YBR_FULL_422")
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_PRESENTATION_KEYWORDS = (
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "VOILUTSequence",
)
# Enhanced multi-frame objects keep rescale and window per frame in these functional groups.
_FRAME_GROUP_SEQUENCES = ("PixelValueTransformationSequence", "FrameVOILUTSequence")
_UINT_RE = re.compile(r"[0-9]+")
# Stricter than float(): no "nan", "inf", exponents or underscores in a URL parameter.
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_VIEWPORT_FORM = "'vw,vh' or 'vw,vh,sx,sy,sw,sh'"


@dataclass(frozen=True)
class Viewport:
    """A PS3.18 §8.3.5.1.3 viewport: fit a source region into `width` x `height` pixels.

    The source region starts at (`source_x`, `source_y`) and spans `source_width` x
    `source_height` image pixels; None extends it to the image edge and a negative extent
    flips the image along that axis. The region is scaled, keeping its aspect ratio, to the
    largest size that fits the viewport (small images are enlarged up to the viewport,
    never beyond it); the output is not padded to the full viewport.
    """

    width: int
    height: int
    source_x: float = 0.0
    source_y: float = 0.0
    source_width: float | None = None
    source_height: float | None = None

    def __post_init__(self) -> None:
        for name, side in (("vw", self.width), ("vh", self.height)):
            if not 1 <= side <= MAX_VIEWPORT_SIDE:
                raise InvalidArgument(
                    f"viewport {name} must be an integer from 1 to {MAX_VIEWPORT_SIDE}, got {side}"
                )
        for name, offset in (("sx", self.source_x), ("sy", self.source_y)):
            if not math.isfinite(offset) or offset < 0:
                raise InvalidArgument(f"viewport {name} must be a number >= 0, got {offset}")
        for name, extent in (("sw", self.source_width), ("sh", self.source_height)):
            if extent is not None and (not math.isfinite(extent) or extent == 0):
                raise InvalidArgument(f"viewport {name} must be a non-zero number, got {extent}")


def parse_viewport(value: str | None) -> Viewport | None:
    """Parse the `viewport` query parameter ("vw,vh" or "vw,vh,sx,sy,sw,sh"); None if absent.

    vw and vh are positive integers; sx and sy are decimals >= 0 (empty means 0); sw and sh
    are non-zero decimals (empty means "to the image edge", negative means flipped).
    """
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) not in (2, 6):
        raise InvalidArgument(f"viewport must be {_VIEWPORT_FORM}, got {_shown(value)}")
    width = _viewport_uint(parts[0], "vw", value)
    height = _viewport_uint(parts[1], "vh", value)
    if len(parts) == 2:
        return Viewport(width, height)
    return Viewport(
        width,
        height,
        source_x=_viewport_decimal(parts[2], "sx", value) or 0.0,
        source_y=_viewport_decimal(parts[3], "sy", value) or 0.0,
        source_width=_viewport_decimal(parts[4], "sw", value),
        source_height=_viewport_decimal(parts[5], "sh", value),
    )


def render_instance(
    dataset: Dataset,
    media_type: str,
    viewport: Viewport | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
) -> bytes:
    """Render an instance for `/instances/{i}/rendered`.

    Google renders only the first frame of a multi-frame instance here; the other frames
    are reachable through `/frames/{n}/rendered`.
    """
    return render_frame(dataset, 1, media_type, viewport, quality)


def render_frame(
    dataset: Dataset,
    frame_number: int,
    media_type: str,
    viewport: Viewport | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
) -> bytes:
    """Render frame `frame_number` (1-based) as an 8-bit `image/jpeg` or `image/png`.

    Greyscale: Modality LUT (rescale or LUT sequence), then the first VOI LUT, else the first
    window (LINEAR, LINEAR_EXACT or SIGMOID), else the frame's min-max; MONOCHROME1 is
    inverted. Colour: RGB as stored (scaled to 8 bits), YBR converted to RGB, PALETTE COLOR
    through its palette. `quality` applies to JPEG only.
    """
    image_format = _image_format(media_type)
    if isinstance(quality, bool) or not 1 <= quality <= 100:
        raise InvalidArgument(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    if not any(keyword in dataset for keyword in _PIXEL_DATA_KEYWORDS):
        raise InvalidDicom("the instance has no pixel data to render")
    index = _frame_index(dataset, frame_number)
    pixels, photometric = _decode_frame(dataset, index)
    display = _to_display(pixels, photometric, dataset, index)
    image = _fit_viewport(_to_image(display), viewport)
    logger.debug("rendered frame %d as %s %dx%d", frame_number, image_format, *image.size)
    return _encode(image, image_format, quality)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _viewport_uint(text: str, name: str, whole: str) -> int:
    if not _UINT_RE.fullmatch(text):
        raise InvalidArgument(
            f"viewport {name} must be a positive integer, got {text!r} in {_shown(whole)}"
        )
    return int(text)


def _viewport_decimal(text: str, name: str, whole: str) -> float | None:
    if not text:
        return None
    if not _DECIMAL_RE.fullmatch(text):
        raise InvalidArgument(f"viewport {name} must be a number, got {text!r} in {_shown(whole)}")
    return float(text)


def _image_format(media_type: str) -> str:
    essence = media_type.split(";", 1)[0].strip().lower()
    if essence not in _PIL_FORMATS:
        raise NotAcceptable(
            f"rendered images are available as {' or '.join(RENDER_MEDIA_TYPES)}, "
            f"not {media_type!r}"
        )
    return _PIL_FORMATS[essence]


def _frame_index(dataset: Dataset, frame_number: int) -> int:
    raw = dataset.get("NumberOfFrames")
    try:
        count = int(raw) if raw not in (None, "") else 1
    except (TypeError, ValueError):
        raise InvalidDicom(f"NumberOfFrames {raw!r} is not an integer") from None
    # A zero count is malformed, but the pixel data still holds one frame.
    count = max(count, 1)
    if not 1 <= frame_number <= count:
        raise InvalidArgument(
            f"frame number {frame_number} is out of range: the instance has {count} frame(s)"
        )
    return frame_number - 1


def _transfer_syntax(dataset: Dataset) -> str:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

    file_meta = getattr(dataset, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if uid:
        return str(uid)
    # Without file meta (a dataset built in memory) the pixel data can only be native.
    if dataset.original_encoding[1] is False:
        return str(ExplicitVRBigEndian)
    return str(ExplicitVRLittleEndian)


def _decode_frame(dataset: Dataset, index: int) -> tuple[np.ndarray, str]:
    """Decode one frame; YBR_FULL(_422) comes back as RGB. Returns (array, photometric)."""
    from pydicom.pixels import get_decoder

    syntax = _transfer_syntax(dataset)
    try:
        decoder = get_decoder(syntax)
        pixels, meta = decoder.as_array(dataset, index=index)
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        # No decoder or every plugin failed: the bytes cannot be turned into an image here.
        logger.warning("cannot decode pixel data in %s: %s", syntax, " ".join(str(exc).split()))
        raise NotAcceptable(f"pixel data in transfer syntax {syntax} cannot be rendered") from exc
    except (ValueError, AttributeError, KeyError, TypeError) as exc:
        raise InvalidDicom(f"pixel data cannot be decoded: {' '.join(str(exc).split())}") from exc
    photometric = str(meta.get("photometric_interpretation") or "")
    return pixels, photometric or str(dataset.get("PhotometricInterpretation", "")).strip()


def _to_display(pixels: np.ndarray, photometric: str, dataset: Dataset, index: int) -> np.ndarray:
    """Turn a decoded frame into uint8 greyscale (rows, cols) or RGB (rows, cols, 3)."""
    if photometric in _GREY:
        return _render_grey(pixels, dataset, index, invert=photometric == "MONOCHROME1")
    if photometric == "PALETTE COLOR":
        return _render_palette(pixels, dataset)
    if photometric in _YBR and str(pixels.dtype) == "uint8":
        from pydicom.pixels import convert_color_space

        return convert_color_space(pixels, photometric, "RGB")
    if photometric == "RGB" and pixels.ndim == 3:
        return _scale_colour(pixels, _bits_stored(dataset, pixels))
    raise NotAcceptable(
        f"images with Photometric Interpretation {photometric!r} cannot be rendered"
    )


def _bits_stored(dataset: Dataset, pixels: np.ndarray) -> int:
    try:
        return int(dataset.get("BitsStored") or 0) or pixels.dtype.itemsize * 8
    except (TypeError, ValueError):
        return int(pixels.dtype.itemsize * 8)


def _scale_colour(pixels: np.ndarray, bits: int) -> np.ndarray:
    import numpy as np

    if pixels.dtype == np.uint8:
        return pixels
    return _to_uint8(pixels.astype(np.float64) * (255.0 / float(2**bits - 1)))


def _render_palette(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    try:
        rgb = apply_color_lut(stored, dataset)[..., :3]
        nominal_bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise InvalidDicom(f"the palette colour lookup table is unusable: {exc}") from exc
    # Palettes declaring 8 bits may still store each entry in 16 bits, values <= 255.
    return _scale_colour(rgb, 8 if nominal_bits <= 8 else 16)


def _render_grey(stored: np.ndarray, dataset: Dataset, index: int, invert: bool) -> np.ndarray:
    """Modality LUT, VOI (else min-max) and inversion onto uint8 greyscale.

    Every step maps one stored value to one output value, so an integer frame goes through a
    table built over its stored value range: the same output as the per-pixel maths, without
    float64 passes over the whole frame.
    """
    view = _presentation_view(dataset, index)
    every_value = _windowed_table(stored, view, dataset, invert)
    if every_value is not None:
        import numpy as np

        # The table is indexed by the stored bits read as unsigned (see _windowed_table).
        return np.take(every_value, stored.view(f"u{stored.dtype.itemsize}"))
    bounds = _table_bounds(stored)
    if bounds is None:
        return _grey_values(stored, view, dataset, invert)
    import numpy as np

    low, high = bounds
    offsets = np.subtract(stored, low, dtype=np.int32 if stored.dtype.itemsize <= 2 else np.int64)
    levels = (np.arange(high - low + 1, dtype=np.int64) + low).astype(stored.dtype)

    def present() -> np.ndarray:
        return np.bincount(offsets.ravel(), minlength=levels.size) > 0

    table = _grey_values(levels, view, dataset, invert, present)
    # np.take is a plain gather; fancy indexing pays for its generality (~0.1 ms at 512x512).
    return np.take(table, offsets)


_TABLES: OrderedDict[tuple[Any, ...], np.ndarray | None] = OrderedDict()
_TABLES_KEPT = 64  # 64 KiB each at most
_TABLES_LOCK = threading.Lock()


def _windowed_table(
    stored: np.ndarray, view: Dataset, dataset: Dataset, invert: bool
) -> np.ndarray | None:
    """For 8/16-bit frames shown through a VOI LUT or window: the output of every stored value.

    Such a table depends on the presentation attributes only, so the images of a series share
    it (kept in a small LRU); min-max frames get None, as their table depends on the frame.
    It is indexed by the stored bits read as unsigned, so no per-pixel offset is needed.
    """
    import numpy as np

    if stored.dtype.kind not in "iu" or stored.dtype.itemsize > 2 or not stored.dtype.isnative:
        return None
    little = _little_endian(dataset)
    key = (stored.dtype.str, invert, little, _transfer_syntax(dataset), _frozen(view))
    with _TABLES_LOCK:
        if key in _TABLES:
            _TABLES.move_to_end(key)
            return _TABLES[key]
    from pydicom.pixels import apply_modality_lut

    levels = np.arange(1 << (8 * stored.dtype.itemsize)).astype(f"u{stored.dtype.itemsize}")
    try:
        with np.errstate(all="ignore"):
            grey = _apply_voi(apply_modality_lut(levels.view(stored.dtype), view), view, little)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError):
        return None  # the frame's own range may still render, or fail with its own error
    table = None if grey is None else _to_uint8(255.0 - grey if invert else grey)
    with _TABLES_LOCK:
        _TABLES[key] = table
        while len(_TABLES) > _TABLES_KEPT:
            _TABLES.popitem(last=False)
    return table


def _frozen(value: Any) -> Any:
    """A hashable form of a data set's elements (the cache key of a presentation view)."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    if isinstance(value, Dataset):
        return tuple((int(e.tag), e.VR, _frozen(e.value)) for e in value)
    if isinstance(value, DicomSequence | list | tuple):
        return tuple(_frozen(item) for item in value)
    return value if isinstance(value, bytes | int | float | str) else str(value)


def _table_bounds(stored: np.ndarray) -> tuple[int, int] | None:
    """(min, max) stored value when a per-value table is worth it; None for per-pixel maths."""
    if stored.dtype.kind not in "iu" or stored.dtype.itemsize > 4 or not stored.size:
        return None
    low, high = int(stored.min()), int(stored.max())
    return (low, high) if high - low < max(stored.size, 1 << 16) else None


def _grey_values(
    stored: np.ndarray,
    view: Dataset,
    dataset: Dataset,
    invert: bool,
    present: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """The greyscale pipeline on `stored`: a frame, or every level of a frame's value range.

    For levels, `present` says which of them occur in the frame (for min-max).
    """
    from pydicom.pixels import apply_modality_lut

    try:
        values = apply_modality_lut(stored, view)
    except (ValueError, AttributeError, KeyError, TypeError, IndexError) as exc:
        raise InvalidDicom(f"the modality LUT or rescale is unusable: {exc}") from exc
    grey = _apply_voi(values, view, _little_endian(dataset))
    if grey is None:
        occurring = present() if present is not None else None
        grey = _min_max(values, _padding_mask(stored, dataset), occurring)
    if invert:
        grey = 255.0 - grey
    return _to_uint8(grey)


def _presentation_view(dataset: Dataset, index: int) -> Dataset:
    """The Modality and VOI LUT attributes that apply to frame `index`, in one flat dataset."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    view = Dataset()
    # pydicom reads OW LUT data with the byte order named by the transfer syntax.
    view.file_meta = FileMetaDataset()
    view.file_meta.TransferSyntaxUID = UID(_transfer_syntax(dataset))
    _copy_present(dataset, view)
    for group in _frame_groups(dataset, index):
        for keyword in _FRAME_GROUP_SEQUENCES:
            items = group.get(keyword)
            if items:
                _copy_present(items[0], view)
    return view


def _frame_groups(dataset: Dataset, index: int) -> Iterator[Dataset]:
    """Shared then per-frame functional group items, so per-frame values win."""
    shared = dataset.get("SharedFunctionalGroupsSequence")
    if shared:
        yield shared[0]
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if per_frame and index < len(per_frame):
        yield per_frame[index]


def _copy_present(source: Dataset, target: Dataset) -> None:
    for keyword in _PRESENTATION_KEYWORDS:
        if keyword in source and not source[keyword].is_empty:
            target[keyword] = source[keyword]


def _little_endian(dataset: Dataset) -> bool:
    from pydicom.uid import ExplicitVRBigEndian

    return _transfer_syntax(dataset) != ExplicitVRBigEndian


def _apply_voi(values: np.ndarray, view: Dataset, little_endian: bool) -> np.ndarray | None:
    """VOI LUT Sequence first, else the first window; None when neither is usable."""
    lut = _first_voi_lut(view, little_endian)
    if lut is not None:
        return _apply_lut_table(values, *lut)
    window = _first_window(view)
    if window is not None:
        return _apply_window(values, *window)
    return None


def _first_voi_lut(view: Dataset, little_endian: bool) -> tuple[np.ndarray, int] | None:
    import numpy as np

    items = view.get("VOILUTSequence")
    if not items:
        return None
    item = items[0]
    descriptor = item.get("LUTDescriptor")
    if not descriptor or len(descriptor) != 3 or "LUTData" not in item or item["LUTData"].is_empty:
        logger.debug("ignoring an incomplete VOI LUT")
        return None
    entries = int(descriptor[0]) or 65536
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        order = "<" if little_endian else ">"
        table = np.frombuffer(data[: 2 * (len(data) // 2)], dtype=f"{order}u2")
    else:
        table = np.asarray(data if isinstance(data, Sequence) else [data])
    table = table[:entries].astype(np.float64)
    return (table, int(descriptor[1])) if table.size else None


def _apply_lut_table(values: np.ndarray, table: np.ndarray, first_mapped: int) -> np.ndarray:
    import numpy as np

    # The descriptor's 2nd value is US or SS; read as US, a negative start appears >= 32768.
    if first_mapped > 32767 and float(np.nanmin(values)) < 0:
        first_mapped -= 65536
    finite = np.nan_to_num(values.astype(np.float64), nan=float(first_mapped))
    indices = np.clip(np.rint(finite) - first_mapped, 0, table.size - 1).astype(np.intp)
    # Scale by the entries actually present: descriptors often overstate the bit depth.
    low, high = float(table.min()), float(table.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return (table[indices] - low) * (255.0 / (high - low))


def _first_window(view: Dataset) -> tuple[float, float, str] | None:
    center = _first_number(view.get("WindowCenter"))
    width = _first_number(view.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(view.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        logger.debug("unknown VOI LUT function %r, using LINEAR", function)
        function = "LINEAR"
    if width < (1.0 if function == "LINEAR" else 1e-9):
        logger.debug("ignoring window width %s for %s", width, function)
        return None
    return center, width, function


def _first_number(value: Any) -> float | None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0] if len(value) else None
    try:
        number = float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    from pydicom import Dataset
    from pydicom.pixels import apply_windowing

    # Stating an unsigned 8-bit, unrescaled output makes pydicom map the window onto 0..255.
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    window.BitsStored = 8
    window.PixelRepresentation = 0
    window.WindowCenter = center
    window.WindowWidth = width
    window.VOILUTFunction = function
    return apply_windowing(values, window)


def _padding_mask(stored: np.ndarray, dataset: Dataset) -> np.ndarray | None:
    """True where a pixel is image, not padding; None when nothing is marked as padding."""
    padding = _first_number(dataset.get("PixelPaddingValue"))
    if padding is None:
        return None
    limit = _first_number(dataset.get("PixelPaddingRangeLimit"))
    low, high = sorted((padding, padding if limit is None else limit))
    return (stored < low) | (stored > high)


def _min_max(
    values: np.ndarray, mask: np.ndarray | None, present: np.ndarray | None = None
) -> np.ndarray:
    import numpy as np

    valid = np.isfinite(values) if values.dtype.kind == "f" else np.ones(values.shape, bool)
    if present is not None:
        valid &= present
    if mask is not None and (valid & mask).any():
        valid &= mask
    if not valid.any():
        return np.zeros(values.shape, dtype=np.float64)
    low, high = float(values[valid].min()), float(values[valid].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return (values.astype(np.float64) - low) * (255.0 / (high - low))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    import numpy as np

    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(finite), 0, 255).astype(np.uint8)


def _to_image(display: np.ndarray) -> Image.Image:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(display))


def _fit_viewport(image: Image.Image, viewport: Viewport | None) -> Image.Image:
    if viewport is None:
        return image
    from PIL import Image

    box = _source_box(viewport, image.width, image.height)
    size = _fitted_size(viewport, box[2] - box[0], box[3] - box[1])
    if size != image.size or box != (0.0, 0.0, float(image.width), float(image.height)):
        image = image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    if viewport.source_width is not None and viewport.source_width < 0:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if viewport.source_height is not None and viewport.source_height < 0:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return image


def _source_box(viewport: Viewport, columns: int, rows: int) -> tuple[float, float, float, float]:
    """The source region as a (left, top, right, bottom) box clipped to the image."""
    left, top = viewport.source_x, viewport.source_y
    right = columns if viewport.source_width is None else left + abs(viewport.source_width)
    bottom = rows if viewport.source_height is None else top + abs(viewport.source_height)
    right, bottom = min(right, columns), min(bottom, rows)
    if left >= right or top >= bottom:
        raise InvalidArgument(f"the viewport source region lies outside the {columns}x{rows} image")
    return float(left), float(top), float(right), float(bottom)


def _fitted_size(viewport: Viewport, width: float, height: float) -> tuple[int, int]:
    scale = min(viewport.width / width, viewport.height / height)
    return (
        max(1, min(viewport.width, round(width * scale))),
        max(1, min(viewport.height, round(height * scale))),
    )


def _encode(image: Image.Image, image_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
