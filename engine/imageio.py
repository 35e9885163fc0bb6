"""Defensive photo decoding: every failure becomes a BadImage with a reason a person can read.

A photo is read once into memory (so its content hash costs no second read), decoded at the
smallest size that still covers the model's input (JPEG draft mode decodes a 12 MP photo at
1/8 scale), turned upright from its EXIF orientation, flattened to 8-bit RGB and centre-cropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadImage

try:  # iPhone photos
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency, but decoding must not die
    pass

# Our own pixel cap is checked before decoding; Pillow's guard stays on as a second line.
Image.MAX_IMAGE_PIXELS = 1_000_000_000
# Files are read whole: a bigger one (a video or disk image named .jpg) is refused unread. The
# largest photo the pixel cap allows (120 MP, 16-bit RGBA, uncompressed) is 0.96 GB.
MAX_FILE_BYTES = 1 << 30

_EXIF_IFD = 0x8769
LARGE_PIXELS = 24_000_000
_LARGE_DECODES = threading.Lock()
_DATETIME_ORIGINAL = 36867
_DATETIME = 306


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (size, size, 3) uint8, ready for the model
    width: int  # original, upright dimensions
    height: int
    taken_at: datetime | None


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def read_file(path: Path) -> bytes:
    """Read a photo's bytes, turning OS errors into reasons."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= MAX_FILE_BYTES:
                data = f.read(MAX_FILE_BYTES + 1)
                size = len(data)
    except FileNotFoundError as e:
        raise BadImage("file vanished while it was being indexed") from e
    except PermissionError as e:
        raise BadImage("permission denied: the file cannot be read") from e
    except IsADirectoryError as e:
        raise BadImage("is a folder, not a file") from e
    except OSError as e:
        raise BadImage(f"cannot read file: {e.strerror or e}") from e
    if size > MAX_FILE_BYTES:
        raise BadImage(f"file too large to be a photo ({size / (1 << 30):.1f} GB; the limit is "
                       f"{MAX_FILE_BYTES / (1 << 30):.0f} GB)")
    return data


# The first bytes of the common photo formats, to tell a damaged photo from something else.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _open(data: bytes) -> Image.Image:
    if not data:
        raise BadImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        kind = next((k for sig, k in _SIGNATURES if data.startswith(sig)), None)
        if kind is not None:  # it says it is one, but Pillow cannot even read its header
            raise BadImage(f"corrupt {kind} image: its header cannot be read") from e
        raise BadImage("not an image: the contents are not a known image format") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage("decompression bomb: the image claims far too many pixels") from e
    except Exception as e:  # Pillow plugins raise many types on corrupt headers
        raise BadImage(f"corrupt image header ({type(e).__name__}: {e})") from e
    return im


def _taken_at(im: Image.Image) -> datetime | None:
    try:
        exif = im.getexif()
        raw = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", "replace")
        if raw:
            return datetime.strptime(str(raw).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
    except Exception:  # bad EXIF is common and never fatal
        return None
    return None


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """Flatten any mode (CMYK, 16-bit, palette, alpha, float) to 8-bit RGB on white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im)
        hi = float(a.max()) if a.size else 0.0
        scale = 255.0 / hi if hi > 0 else 0.0
        out = np.empty(a.shape, dtype=np.uint8)
        for top in range(0, a.shape[0], 256):  # in bands: a float copy of it all is 8 bytes/px
            out[top : top + 256] = np.clip(a[top : top + 256] * scale, 0, 255)
        im = Image.fromarray(out, "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")


def decode(data: bytes, size: int = 224, max_pixels: int = 120_000_000) -> DecodedImage:
    """Decode photo bytes into a (size, size, 3) uint8 centre crop.

    Raises BadImage with a reason for anything that is not a usable photo.
    """
    im = _open(data)
    try:
        w, h = im.size
        if w <= 0 or h <= 0:
            raise BadImage(f"invalid dimensions {w}x{h}")
        is_jpeg = im.format == "JPEG"
        # JPEG decodes at 1/2, 1/4 or 1/8 scale for free; other formats decode in full.
        decoded_pixels = w * h / (64 if is_jpeg else 1)
        if decoded_pixels > max_pixels:
            raise BadImage(
                f"image too large: {w}x{h} pixels ({w * h / 1e6:.0f} MP, "
                f"limit {max_pixels / 1e6:.0f} MP)"
            )
        # Large decodes (a big PNG or TIFF) take one at a time, so that several decoding
        # threads never hold several of them in memory at once.
        big = decoded_pixels > LARGE_PIXELS
        with _LARGE_DECODES if big else contextlib.nullcontext():
            taken = _taken_at(im)
            if getattr(im, "is_animated", False):
                im.seek(0)
            if is_jpeg:
                s = size / min(w, h)
                if s < 1:
                    im.draft("RGB", (max(size, int(w * s + 1)), max(size, int(h * s + 1))))
            uw, uh = (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)
            ImageOps.exif_transpose(im, in_place=True)  # no copy of a large photo that is upright
            im = _to_rgb(im)
            pixels = _resize_crop(im, size)
    except BadImage:
        raise
    except MemoryError as e:
        raise BadImage("image too large to decode in memory") from e
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as e:
        msg = str(e).lower()
        if "truncated" in msg or "premature" in msg or isinstance(e, EOFError):
            raise BadImage("truncated or damaged image data") from e
        raise BadImage(f"corrupt image data ({type(e).__name__}: {e})") from e
    except Exception as e:
        raise BadImage(f"cannot decode image ({type(e).__name__}: {e})") from e
    finally:
        im.close()
    return DecodedImage(pixels=pixels, width=uw, height=uh, taken_at=taken)


def _resize_crop(im: Image.Image, size: int) -> np.ndarray:
    w, h = im.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    left, top = (nw - size) // 2, (nh - size) // 2
    if nw * nh > 16 * size * size:  # a long strip (1 x 100000): resize only what the crop keeps
        box = (left / s, top / s, (left + size) / s, (top + size) / s)
        im = im.resize((size, size), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
        return np.asarray(im, dtype=np.uint8)
    im = im.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8)


def decode_file(path: Path, size: int = 224, max_pixels: int = 120_000_000) -> DecodedImage:
    return decode(read_file(path), size=size, max_pixels=max_pixels)


def open_upright(path: Path, max_side: int | None = None) -> Image.Image:
    """Open a photo for display: upright, RGB, optionally reduced so its long side <= max_side."""
    im = _open(read_file(path))
    try:
        if getattr(im, "is_animated", False):
            im.seek(0)
        if max_side and im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))
        im = ImageOps.exif_transpose(im)
        im = _to_rgb(im)
        if max_side:
            im.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
        im.load()
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"cannot decode image ({type(e).__name__}: {e})") from e
    return im
