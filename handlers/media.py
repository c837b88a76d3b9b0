"""Product pictures: an upload is checked to be an image by decoding it
(never by its name or content type), turned upright, stripped of its
metadata (EXIF carries where and when a photo was taken), shrunk to at most
1080 px on the long side, re-encoded and kept in the media folder under a
name made from its content.

A content-hash name makes storing idempotent (the same picture twice is one
file) and lets /media/<name> be cached for ever. Files are written before
the transaction commits: if it then rolls back, an unused file is left,
which is harmless; the other order could leave a product pointing at
nothing. Files are never deleted: an order line keeps its product's cover
URL after the picture is removed from the product.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from PIL import Image, ImageOps, UnidentifiedImageError

from . import settings
from .errors import DomainError

URL_PREFIX = "/media/"
MAX_BYTES = 10 * 1024 * 1024  # what the admin's product form accepts in all
MAX_SIDE = 1080
# Decompression bombs: a few KB of PNG can declare 100 000 × 100 000 pixels.
# 50 MP still takes the 48 MP photos of today's phones.
MAX_PIXELS = 50_000_000
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
JPEG_QUALITY = 85
NAME = re.compile(r"^[0-9a-f]{32}\.(?:jpg|png)$")
KINDS = "JPG、PNG、WEBP 或 GIF"
Image.init()  # every format plugin registered now, so ``formats`` can name WEBP


@dataclass(frozen=True)
class Picture:
    """A checked, re-encoded picture, ready to be stored."""

    name: str
    data: bytes
    width: int
    height: int

    @property
    def url(self) -> str:
        return URL_PREFIX + self.name


def media_dir() -> Path:
    """``[admin] media_dir``, else ``<instance path>/media`` (var/media)."""
    configured = settings.section("admin")["media_dir"]
    return Path(configured) if configured else Path(current_app.instance_path) / "media"


def prepare(data: bytes, label: str = "图片") -> Picture:
    """Decode, check and re-encode an upload; DomainError says what is wrong."""
    if not data:
        raise DomainError(f"{label}是空文件")
    if len(data) > MAX_BYTES:
        raise DomainError(f"{label}太大，最大 {MAX_BYTES // 1024 // 1024} MB")
    try:
        # Pillow itself refuses (or, between its limit and twice that, warns
        # about) bombs when it opens one; the cap below is ours and lower.
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if width < 1 or height < 1 or width * height > MAX_PIXELS:
                raise DomainError(f"{label}尺寸过大（{width}×{height}），请上传 5000 万像素以内的图片")
            # MPO: how Pillow reads many phones' JPEGs (a depth or preview picture inside).
            if image.format in ("JPEG", "MPO"):
                # Decode at a reduced scale when the photo is far larger than we keep.
                image.draft("RGB", (MAX_SIDE * 2, MAX_SIDE * 2))
            image.load()
            return _encode(image)
    except DomainError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DomainError(f"{label}尺寸过大，请上传 5000 万像素以内的图片") from None
    except UnidentifiedImageError:
        raise DomainError(f"{label}不是可识别的图片，请上传 {KINDS} 图片") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError):
        # Truncated or corrupt data: Pillow says so with one of these.
        raise DomainError(f"{label}已损坏或不完整，无法读取，请重新导出后上传") from None


def _encode(image: Image.Image) -> Picture:
    icc = image.info.get("icc_profile")  # colour, not metadata: a P3 phone photo keeps its colours
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # a photo with broken EXIF is still a photo: kept as it lies
        upright = image
    transparent = _has_transparency(upright)
    if transparent:
        out = upright.convert("RGBA")
    else:
        out = upright.convert("L" if upright.mode in ("1", "L", "I;16", "I") else "RGB")
    out.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    out.info = {}  # EXIF, XMP, comments, text chunks: none of it is written
    buffer = io.BytesIO()
    extra = {"icc_profile": icc} if icc else {}
    if transparent:
        out.save(buffer, "PNG", optimize=True, **extra)
        ext = "png"
    else:
        out.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True, **extra)
        ext = "jpg"
    data = buffer.getvalue()
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{ext}"
    return Picture(name, data, out.width, out.height)


def _has_transparency(image: Image.Image) -> bool:
    if image.mode == "P":
        if "transparency" not in image.info:
            return False
        image = image.convert("RGBA")
    elif image.mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    elif image.mode not in ("RGBA", "RGBa"):
        return "transparency" in image.info
    low, _ = image.getchannel("A").getextrema()
    return low < 255


def store(picture: Picture) -> str:
    """Write the picture once (atomically) and give its URL."""
    folder = media_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / picture.name
    if not target.exists():
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(picture.data)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return picture.url


def is_ours(url: str) -> bool:
    """A URL of a picture stored here (rather than, say, the try-out's static ones)."""
    return url.startswith(URL_PREFIX) and bool(NAME.match(url[len(URL_PREFIX):]))


def path_of(name: str) -> Path | None:
    """The file behind /media/<name>, or None for any other name."""
    if not NAME.match(name or ""):
        return None
    return media_dir() / name
