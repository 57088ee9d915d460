"""File I/O: atomic writes, images, depth, masks, video, JSON (and, by format, meshes and camera files).

The layer above ``geometry``: it may import ``geometry``, never ``backends``, ``pipelines`` or ``cli``.
"""

from __future__ import annotations

from scenescape.io.files import (  # noqa: F401
    PathLike,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    center_crop_box,
    colorize_depth,
    depth_color_range,
    fit_to_size,
    image_to_uint8,
    load_depth,
    load_image,
    read_json,
    read_json_file,
    read_video,
    save_image,
    save_mask,
    save_npy,
    slugify,
    to_numpy,
    write_gif,
    write_json,
    write_video,
)

__all__ = ['PathLike', 'atomic_path', 'atomic_write_bytes', 'atomic_write_text', 'center_crop_box', 'colorize_depth', 'depth_color_range', 'fit_to_size', 'image_to_uint8', 'load_depth', 'load_image', 'read_json', 'read_json_file', 'read_video', 'save_image', 'save_mask', 'save_npy', 'slugify', 'to_numpy', 'write_gif', 'write_json', 'write_video']
