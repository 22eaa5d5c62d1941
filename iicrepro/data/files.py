"""Reading source files with errors that name the file, resizing, hashing and atomic writes."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IGNORE = 255  # label value of pixels masked out of loss and metric


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """Decode an image file to uint8 (H, W, C); ValueError naming the file when it is corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing image file {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return np.array(img.convert(mode))
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable image {path}: {err}") from err


def read_label_png(path: Path) -> np.ndarray:
    """Decode a single-channel label PNG (one class id per pixel) to uint8 (H, W)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing label file {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"expected a single-channel label image, got mode {img.mode}")
            arr = np.array(img)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable label image {path}: {err}") from err
    if arr.max(initial=0) > 255:
        raise ValueError(f"label image {path} holds values above 255")
    return arr.astype(np.uint8)


def load_mat(path: Path, key: str) -> np.ndarray:
    """Read array `key` from a MATLAB .mat file; errors name the file."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing .mat file {path}")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy raises many types on corrupt files
        raise ValueError(f"corrupt or unreadable .mat file {path}: {err}") from err
    if key not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise ValueError(f".mat file {path} has no key {key!r} (keys: {keys})")
    return np.asarray(content[key])


def check_same_size(image: np.ndarray, label: np.ndarray, path: Path) -> None:
    """Image (H, W, C) and label (H, W) must cover the same pixels."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"size mismatch for {path}: image {image.shape[:2]} vs label {label.shape[:2]}")


def map_labels(raw: np.ndarray, lut: np.ndarray, valid_max: int, path: Path) -> np.ndarray:
    """Map raw ids through a 256-entry lookup table; ids above `valid_max` (except 255) raise ValueError."""
    bad = (raw > valid_max) & (raw != IGNORE)
    if bad.any():
        raise ValueError(f"label file {path} holds ids {sorted(np.unique(raw[bad]).tolist())[:10]} "
                         f"outside the class range 0..{valid_max} (255 = unlabelled)")
    return lut[raw]


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Output size of a resize by `scale`, rounded as OpenCV does for cv2.resize(fx=fy=scale)."""
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_pair(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Pre-scale image (bilinear) and label (nearest), as the original's cv2.resize (facts section 3).

    image uint8 (H, W, C), label uint8 (H, W). Bilinear uses half-pixel centres without antialiasing
    (cv2.INTER_LINEAR); nearest uses floor(dst * in/out) (cv2.INTER_NEAREST). Values are rounded to uint8.
    """
    if scale == 1.0:
        return image, label
    h, w = scaled_size(image.shape[0], image.shape[1], scale)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()  # (1, C, H, W)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    out_img = x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    y = torch.from_numpy(np.ascontiguousarray(label))[None, None]  # (1, 1, H, W) uint8
    out_lbl = F.interpolate(y, size=(h, w), mode="nearest")[0, 0].numpy()
    return np.ascontiguousarray(out_img), np.ascontiguousarray(out_lbl)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) array -> uint8 (C, H, W) contiguous tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_sha256(text: str) -> dict[str, str]:
    """Parse a `sha256sum` listing ("<hex>  <relative path>" per line) into {relative path: hex}."""
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            entries[name.strip().lstrip("*")] = digest
    return entries


def read_sha256_list(path: Path) -> dict[str, str]:
    """parse_sha256 of a listing file."""
    return parse_sha256(Path(path).read_text())


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary name and os.replace (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed temporary folder onto `final`, replacing an older version atomically enough.

    os.replace cannot overwrite a non-empty folder, so the old one is first moved aside, then removed.
    """
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
