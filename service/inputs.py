"""Reading a predict/ood request body (multipart uploads, JSON or a .npy array) into one batch."""

from __future__ import annotations

import asyncio
import io
import math

import numpy as np
import torch
from pydantic import ValidationError
from starlette.requests import Request

from jem import InputSpec
from service.errors import InvalidInput, TooManyImages, UnsupportedMediaType
from service.images import decode_base64, decode_image, images_to_tensor, pixels_to_tensor
from service.schemas import PredictJSON
from service.settings import Settings
from service.uploads import read_files

__all__ = ["NPY_CONTENT_TYPE", "read_batch"]

NPY_CONTENT_TYPE = "application/x-npy"

# Uploads up to this many bytes in all are decoded on the event loop (a single digit PNG is
# ~100 bytes and ~0.1 ms of decoding): a hop to a worker thread and back costs a context switch
# and a GIL hand-off each way, more than such a decode, and the GIL is held while decoding small
# images either way. Larger uploads (photos) are decoded on a worker thread.
_INLINE_DECODE_BYTES = 16 * 1024


def _too_many(n: int, limit: int) -> TooManyImages:
    return TooManyImages(
        f"{n} images in one request; the limit is {limit} (JEM_MAX_IMAGES_PER_REQUEST): "
        "split them over several requests"
    )


def _decode_all(blobs: list[tuple[str, bytes]], spec: InputSpec, max_pixels: int) -> torch.Tensor:
    arrays = [decode_image(data, spec, max_pixels=max_pixels, name=name) for name, data in blobs]
    return images_to_tensor(arrays, spec)


def _npy(body: bytes, spec: InputSpec, settings: Settings) -> torch.Tensor:
    """A .npy array in the JSON `pixels` layout: uint8 0..255, or floats in the value range.

    The header is read and checked against the body before any array exists: np.load would
    allocate whatever shape a header claims (a hostile 30-byte body can ask for terabytes),
    falls back to pickles for non-.npy input, and reads .npz archives.
    """
    hint = "write one array with numpy.save: uint8 or float, shape [N, C, H, W] (or [N, H, W])"
    fp = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran_order, dtype = read_header(fp)
    except (ValueError, OSError, EOFError, TypeError) as exc:
        raise InvalidInput(f"body is not a .npy file ({exc}); {hint}") from None
    if dtype.hasobject:  # pickled Python objects: refused, never loaded
        raise InvalidInput(f"the .npy array holds Python objects ({dtype}); {hint}")
    count = math.prod(shape)
    available = len(body) - fp.tell()
    if count * dtype.itemsize != available:
        raise InvalidInput(
            f"the .npy header says {count * dtype.itemsize} bytes of data (shape "
            f"{list(shape)}, dtype {dtype}) but the body holds {available}; {hint}"
        )
    if not shape or not shape[0]:
        raise InvalidInput(f"the .npy array holds no images (shape {list(shape)}); {hint}")
    if shape[0] > settings.max_images_per_request:
        raise _too_many(shape[0], settings.max_images_per_request)
    flat = np.frombuffer(body, dtype=dtype, count=count, offset=fp.tell())
    array = flat.reshape(shape, order="F" if fortran_order else "C")
    return pixels_to_tensor(array, spec, "uint8" if array.dtype == np.uint8 else "float")


async def read_batch(request: Request, spec: InputSpec, settings: Settings) -> torch.Tensor:
    """The request's images as one (B, C, H, W) tensor in the model's input spec."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        limit = settings.max_images_per_request
        blobs = await read_files(request, max_files=limit, max_fields=limit)
    elif content_type == "application/json":
        try:
            body = PredictJSON.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(f"invalid JSON body: {problems}") from None
        if (body.images is None) == (body.pixels is None):
            raise InvalidInput("send exactly one of 'images' (base64 files) or 'pixels' (arrays)")
        items = body.images if body.images is not None else body.pixels
        assert items is not None
        if not items:
            raise InvalidInput("no images in the request")
        if len(items) > settings.max_images_per_request:
            raise _too_many(len(items), settings.max_images_per_request)
        if body.pixels is not None:
            return pixels_to_tensor(body.pixels, spec, body.pixel_format)
        blobs = [
            (f"images[{i}]", decode_base64(s, name=f"images[{i}]")) for i, s in enumerate(items)
        ]
    elif content_type == NPY_CONTENT_TYPE:
        return _npy(await request.body(), spec, settings)
    else:
        raise UnsupportedMediaType(
            f"content type {content_type or 'missing'!r}: send multipart/form-data file uploads, "
            f"application/json, or a NumPy array as {NPY_CONTENT_TYPE}"
        )
    if len(blobs) > settings.max_images_per_request:
        raise _too_many(len(blobs), settings.max_images_per_request)
    if sum(len(data) for _, data in blobs) <= _INLINE_DECODE_BYTES:
        # small uploads decode faster than a hop to a worker thread and back costs
        return _decode_all(blobs, spec, settings.max_image_pixels)
    return await asyncio.to_thread(_decode_all, blobs, spec, settings.max_image_pixels)
