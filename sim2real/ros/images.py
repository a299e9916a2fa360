"""Camera frames from ROS 2 messages to policy images (OpenCV).

- `decode_image` turns the payload of a sensor_msgs/Image (rgb8, bgr8, mono8) or
  CompressedImage (jpeg, png) into an RGB array, the channel order the policies were trained on.
- `decode_image_msg` does it for a whole Image or CompressedImage message.
- `crop_resize` cuts and scales a frame to the task contract's `rgb` feature: uint8 [3, H, W].

Below the data readers and the bridge alike: both turn recorded or live frames into images here.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from sim2real.ros import messages as m

RAW_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, encoding: str, height: int = 0,
                 width: int = 0, step: int = 0) -> np.ndarray:
    """The image as RGB uint8 [H, W, 3].

    Args:
        data: the message's `data` field.
        encoding: Image.encoding (rgb8, bgr8, mono8) or CompressedImage.format (anything naming
            jpeg or png, e.g. "jpeg", "rgb8; jpeg compressed bgr8").
        height, width, step: Image's fields (raw encodings only); step 0 means no row padding.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.dtype != np.uint8:
        raise ValueError(f"image data: expected bytes or a uint8 array, got dtype {buffer.dtype}")
    fmt = encoding.lower()
    if any(name in fmt for name in COMPRESSED_FORMATS):
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"CompressedImage format {encoding!r}: OpenCV could not decode {buffer.size} bytes")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if fmt not in RAW_ENCODINGS:
        raise ValueError(f"image encoding {encoding!r} is not supported; expected one of "
                         f"{', '.join(RAW_ENCODINGS)} (Image) or a format naming {'/'.join(COMPRESSED_FORMATS)} "
                         f"(CompressedImage)")
    channels = RAW_ENCODINGS[fmt]
    step = step or width * channels
    if height <= 0 or width <= 0 or step < width * channels:
        raise ValueError(f"Image ({encoding}): expected height, width > 0 and step >= width x {channels}, got "
                         f"height={height}, width={width}, step={step}")
    if buffer.size < height * step:
        raise ValueError(f"Image ({encoding}, {height}x{width}, step {step}): expected {height * step} bytes, "
                         f"got {buffer.size}")
    rows = buffer[:height * step].reshape(height, step)[:, :width * channels]
    pixels = rows.reshape(height, width, channels)
    if fmt == "rgb8":
        return pixels.copy()
    if fmt == "bgr8":
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)


def decode_image_msg(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image or CompressedImage as RGB uint8 [H, W, 3] (ValueError if it cannot be)."""
    if m.type_of(msg) == m.COMPRESSED_IMAGE:
        return decode_image(msg.data, msg.format)
    return decode_image(msg.data, msg.encoding, msg.height, msg.width, msg.step)


def crop_resize(frame: np.ndarray, size: int | tuple[int, int],
                crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Cut `crop` = (x, y, width, height) pixels out of `frame` (RGB [H, W, 3] or mono [H, W], uint8)
    and resize it to `size` (side, or (height, width)): uint8 [3, height, width].

    Without `crop` the whole frame is resized, so a non-square frame is squashed into a square
    image; pass a square crop to keep the proportions the simulated camera had.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise ValueError(f"frame: expected uint8 [H, W, 3] or [H, W], got {frame.dtype} {list(frame.shape)}")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if crop is not None:
        x, y, w, h = (int(v) for v in crop)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > frame.shape[1] or y + h > frame.shape[0]:
            raise ValueError(f"crop (x={x}, y={y}, w={w}, h={h}) does not fit the {frame.shape[1]}x{frame.shape[0]} "
                             f"frame")
        frame = frame[y:y + h, x:x + w]
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size: expected positive, got {size}")
    # INTER_AREA averages the pixels a shrunk pixel covers (no aliasing); it blurs when enlarging.
    shrink = out_h * out_w < frame.shape[0] * frame.shape[1]
    resized = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1))
