"""What every dataset shares: the base class, file checks, the refusal to download, 8-bit image reading, resizing to
encoder-friendly sizes, and deterministic splits.

Splits are decided by hashing each sample's id with the seed (SHA-256), never by a random generator's stream: the
same files and seed give the same split on every machine and with every NumPy/PyTorch version, and a sample's split
does not depend on the order in which the file system lists the files.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from skysense.containers import Sample
from skysense.data.raster.litter import is_litter
from skysense.data.sensors import HR_RGB, Sensor

Transform = Callable[[Sample], Sample]


class SkySenseDataset(Dataset):
    """Base class: a map-style dataset of :class:`~skysense.containers.Sample` in sensor units.

    Subclasses implement :meth:`_load` and set the class attributes below. ``transforms`` (a callable
    ``Sample -> Sample``, e.g. :class:`~skysense.data.transforms.Normalize`) is applied to every loaded sample; it is
    a public attribute, so a datamodule may set it after construction.

    Attributes:
        sensors: the :class:`~skysense.data.sensors.Sensor` of each modality the samples carry, keyed "hr", "s2",
            "s1" (what :class:`~skysense.data.transforms.Normalize` needs).
        splits: the split names the dataset accepts.
        classes: class names, index = label, where the task has classes.
    """

    sensors: dict[str, Sensor] = {}
    splits: tuple[str, ...] = ("all",)
    classes: tuple[str, ...] = ()

    def __init__(self, root: str | Path | None, split: str, transforms: Transform | None, download: bool) -> None:
        refuse_download(download, type(self).__name__)
        if root is None:
            raise ValueError(f"{type(self).__name__} needs root: the folder holding the dataset's files")
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{type(self).__name__}: root folder {self.root} does not exist")
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__}: split must be one of {list(self.splits)}, got {split!r}")
        self.split = split
        self.transforms = transforms

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {size} samples")
        sample = self._load(index % size)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
def refuse_download(download: bool, name: str) -> None:
    """Raise if ``download`` is asked for: skysense never downloads data."""
    if download:
        raise RuntimeError(
            f"{name}: download=True is not supported. skysense never downloads datasets (training machines are often "
            "offline, and several of these datasets come with terms you must accept yourself). Fetch the files from "
            "the source named in the dataset's docstring and pass their folder as root."
        )


def require_path(path: Path, what: str) -> Path:
    """``path`` if it exists, else FileNotFoundError naming it and what was expected there."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: expected {path}")
    return path


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value ("img_2" before "img_10")."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part)


def list_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files in ``folder`` whose suffix (case-insensitive) is in ``suffixes``, in natural order (no decoding); copy
    litter (a Mac's ``._x.jpg``) left out."""
    wanted = {s.lower() for s in suffixes}
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted and not is_litter(p)),
        key=lambda p: natural_key(p.name),
    )


# ----------------------------------------------------------------------------------------------------------------
# 8-bit images
# ----------------------------------------------------------------------------------------------------------------
def open_image(path: Path) -> Image.Image:
    """Open and decode an image, turning decoder errors into ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except OSError as err:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"cannot read image {path}: {err}") from err


def rgb_image(image: Image.Image, path: Path, allow_gray: bool = False) -> tuple[Image.Image, np.ndarray | None]:
    """Check an image is 8-bit RGB; return it and its pixel validity (from an alpha channel), or None (all valid).

    Args:
        image: the decoded image.
        path: its file, for messages.
        allow_gray: accept 8-bit grayscale ("L") images, replicated to three identical channels.

    Raises:
        ValueError: for any other mode, naming the file.
    """
    if image.mode == "RGB":
        return image, None
    if image.mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"))
        return image.convert("RGB"), alpha > 0  # fully transparent pixels are no data
    if image.mode == "L" and allow_gray:
        return image.convert("RGB"), None
    raise ValueError(f"{path}: expected an 8-bit RGB image, got PIL mode {image.mode!r}")


def to_chw_float(image: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image → (3, H, W) float32 in DN 0–255 (not normalised)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1).copy())


def read_rgb(path: Path) -> torch.Tensor:
    """An 8-bit RGB image file → (3, H, W) float32, values 0–255 (the HR sensor's units)."""
    image, _ = rgb_image(open_image(path), path)
    return to_chw_float(image)


def resize_square(image: Image.Image, size: int, mode: str, path: Path) -> Image.Image:
    """Bring an image to ``size``×``size`` pixels.

    Args:
        image: the image.
        size: output side in pixels.
        mode: "resize" (PIL bilinear, antialiased when shrinking; values stay 0–255 because the filter weights are
            non-negative) or "center_crop" (no resampling; the image must be at least ``size`` on each side).
        path: the file, for messages.
    """
    if image.size == (size, size):
        return image
    if mode == "resize":
        return image.resize((size, size), Image.Resampling.BILINEAR)
    if mode == "center_crop":
        width, height = image.size
        if width < size or height < size:
            raise ValueError(f"{path}: cannot center-crop {size}×{size} from a {width}×{height} image")
        left, top = (width - size) // 2, (height - size) // 2
        return image.crop((left, top, left + size, top + size))
    raise ValueError(f"resize mode must be 'resize' or 'center_crop', got {mode!r}")


def letterbox(
    image: Image.Image, valid: np.ndarray | None, size: int | None, multiple: int = 32
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
    """Fit an image into a fixed square canvas (or pad it to a multiple) for a detector.

    With ``size``: the longer side is resized to ``size`` (aspect ratio kept, PIL bilinear) and the image is padded
    with zeros at the bottom/right to ``size``×``size``. Without: the native size is kept and padded up to the next
    multiple of ``multiple``. Padding is marked invalid in the returned mask.

    Args:
        image: 8-bit RGB image.
        valid: (H, W) bool pixel validity of the input, or None (all valid).
        size: canvas side in pixels (a multiple of ``multiple``), or None.
        multiple: side multiple the encoder needs (32 for the Swin encoder).

    Returns:
        hr (3, S, S) float32 0–255, hr_valid (S, S) bool, (scale_x, scale_y) that map input pixel coordinates to
        output ones (x_out = x_in · scale_x).
    """
    width, height = image.size
    if size is not None:
        if size % multiple:
            raise ValueError(f"image size {size} must be a multiple of {multiple}")
        ratio = size / max(width, height)
        new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
            if valid is not None:
                valid = np.asarray(Image.fromarray(valid).resize((new_w, new_h), Image.Resampling.NEAREST))
        out_h = out_w = size
    else:
        new_w, new_h = width, height
        out_h, out_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    hr = torch.zeros(3, out_h, out_w)
    hr[:, :new_h, :new_w] = to_chw_float(image)
    hr_valid = torch.zeros(out_h, out_w, dtype=torch.bool)
    hr_valid[:new_h, :new_w] = True if valid is None else torch.from_numpy(np.asarray(valid, dtype=bool))
    return hr, hr_valid, (new_w / width, new_h / height)


# ----------------------------------------------------------------------------------------------------------------
# Deterministic splits
# ----------------------------------------------------------------------------------------------------------------
def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions (non-negative, summing to 1)."""
    values = dict(fractions)
    if any(v < 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {values}")
    return values


def hash_order(keys: Sequence[Hashable], seed: int) -> list[int]:
    """Positions of ``keys`` sorted by SHA-256 of "seed/key": a seeded shuffle that is the same everywhere."""
    digests = [hashlib.sha256(f"{seed}/{key}".encode()).hexdigest() for key in keys]
    return sorted(range(len(keys)), key=lambda i: (digests[i], i))


def cut_in_order(order: Sequence[int], fractions: dict[str, float]) -> dict[str, list[int]]:
    """Cut an ordered list at the rounded cumulative fractions (disjoint, covering)."""
    total = len(order)
    out, start, cumulative = {}, 0, 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        stop = total if name == list(fractions)[-1] else round(cumulative * total)
        out[name] = list(order[start:stop])
        start = stop
    return out


def stratified_split(
    ids: Sequence[str], labels: Sequence[Hashable], fractions: Mapping[str, float], seed: int
) -> dict[str, list[int]]:
    """Split sample positions per class, each class cut by ``fractions`` in its seeded hash order.

    Args:
        ids: a unique, stable id per sample (e.g. its relative file path).
        labels: the class of each sample.
        fractions: split name → fraction (ordered; the last split takes the rounding remainder).
        seed: changes the order.

    Returns:
        split name → sorted sample positions; the splits are disjoint and cover every sample.
    """
    fractions = check_fractions(fractions)
    by_class: dict[Hashable, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    out: dict[str, list[int]] = {name: [] for name in fractions}
    for members in by_class.values():
        order = [members[i] for i in hash_order([ids[m] for m in members], seed)]
        for name, chosen in cut_in_order(order, fractions).items():
            out[name].extend(chosen)
    return {name: sorted(chosen) for name, chosen in out.items()}


def grouped_split(groups: Sequence[Hashable], fractions: Mapping[str, float], seed: int) -> dict[str, list[int]]:
    """Split sample positions so that every group (e.g. a measurement site) falls in one split only.

    Groups are taken in seeded hash order and assigned to the first split whose share of samples is not yet full.

    Returns:
        split name → sorted sample positions (disjoint, covering).
    """
    fractions = check_fractions(fractions)
    members: dict[Hashable, list[int]] = {}
    for position, group in enumerate(groups):
        members.setdefault(group, []).append(position)
    keys = list(members)
    targets = {name: fraction * len(groups) for name, fraction in fractions.items()}
    out: dict[str, list[int]] = {name: [] for name in fractions}
    names = list(fractions)
    current = 0
    for index in hash_order([str(k) for k in keys], seed):
        while current < len(names) - 1 and len(out[names[current]]) >= targets[names[current]]:
            current += 1
        out[names[current]].extend(members[keys[index]])
    return {name: sorted(chosen) for name, chosen in out.items()}


# ----------------------------------------------------------------------------------------------------------------
# Scene classification from class folders
# ----------------------------------------------------------------------------------------------------------------
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"),
                 "test": ("test", "testing")}  # fmt: skip  # the folder names datasets give their splits
_SPLIT_OF_NAME = {name: split for split, names in SPLIT_FOLDERS.items() for name in names}


def split_named(name: str) -> str:
    """The split a folder name stands for ("train", "val", "test"; any case), else ""."""
    return _SPLIT_OF_NAME.get(name.lower(), "")


def split_folders(folder: Path, holds: Callable[[Path], bool] = Path.is_dir) -> dict[str, Path]:
    """{split: path} of the split folders (train/, val/, test/, …) directly under ``folder``: per split, the first
    of its names for which ``holds(path)``."""
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        path = next((folder / n for n in names if holds(folder / n)), None)
        if path is not None:
            found[split] = path
    return found


class ImageFolderClassification(SkySenseDataset):
    """Scene classification from ``root/<ClassName>/*.jpg``: the HR role, target a class index.

    Subclasses set ``classes`` (index = sorted order), ``image_folder`` (the folder under ``root`` holding the class
    folders, "" for root itself) and ``default_fractions``; without them (:class:`SceneFolder`) the classes are the
    class folders found, in sorted order, or the ``classes`` given.

    Splits: "all", or "train"/"val"/"test": from split folders when the dataset ships them
    (``root/train/<ClassName>/…``, ``root/val/…``, ``root/test/…``; also ``training``/``validation``/``testing``),
    else cut per class by ``split_fractions`` in a seeded hash order of the files' relative paths (see
    :func:`stratified_split`): deterministic, stratified, disjoint, covering.
    """

    sensors = {"hr": HR_RGB}
    splits = ("all", "train", "val", "test")
    image_folder: str = ""
    suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif")
    default_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "all",
        split_fractions: tuple[float, float, float] | None = None,
        seed: int = 0,
        image_size: int | None = None,
        resize: str = "resize",
        transforms: Transform | None = None,
        download: bool = False,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(root, split, transforms, download)
        if resize not in ("resize", "center_crop"):
            raise ValueError(f"resize must be 'resize' or 'center_crop', got {resize!r}")
        self.image_size, self.resize = image_size, resize
        self.split_fractions = tuple(split_fractions or self.default_fractions)
        if len(self.split_fractions) != 3:
            raise ValueError(f"split_fractions must be (train, val, test), got {self.split_fractions}")
        self.seed = seed
        folder = require_path(self.root / self.image_folder, f"{type(self).__name__} image folder")
        by_split = {name: path for name, path in split_folders(folder).items() if self._class_folders(path)}
        sources = list(by_split.values()) if split == "all" or not by_split else [by_split.get(split)]
        if sources == [None]:
            raise FileNotFoundError(
                f"{type(self).__name__}: no {split} folder in {folder} (its split folders: "
                f"{', '.join(p.name for p in by_split.values())})"
            )
        sources = sources or [folder]
        if classes is not None:
            self.classes = tuple(classes)
        elif not self.classes:
            every = list(by_split.values()) or [folder]  # every split's folders: the same indices in each split
            self.classes = tuple(sorted({c.name for source in every for c in self._class_folders(source)}))
            if not self.classes:
                raise FileNotFoundError(
                    f"{type(self).__name__}: no class folders with {list(self.suffixes)} images in {folder}; expected "
                    f"{folder}/<ClassName>/<image> (or train/, val/, test/ folders of them)"
                )
        files: list[Path] = []
        labels: list[int] = []
        for source in sources:
            for label, name in enumerate(self.classes):
                class_dir = source / name
                found = list_files(class_dir, self.suffixes) if class_dir.is_dir() else []
                if by_split and not found:  # a split folder may lack a class
                    continue
                require_path(class_dir, f"{type(self).__name__} class folder {name!r}")
                if not found:
                    raise FileNotFoundError(f"{type(self).__name__}: no {list(self.suffixes)} images in {class_dir}")
                files += found
                labels += [label] * len(found)
        if split != "all" and not by_split:
            ids = [str(p.relative_to(folder)) for p in files]
            chosen = stratified_split(
                ids, labels, dict(zip(("train", "val", "test"), self.split_fractions, strict=True)), seed
            )[split]
            files, labels = [files[i] for i in chosen], [labels[i] for i in chosen]
        if not files:
            raise FileNotFoundError(f"{type(self).__name__}: no images for split {split!r} in {folder}")
        self.files, self.targets = files, labels

    def _class_folders(self, folder: Path) -> list[Path]:
        """The sub-folders of ``folder`` that hold images (class folders), sorted; split folders are not classes."""
        if not folder.is_dir():
            return []
        return sorted(
            d for d in folder.iterdir()
            if d.is_dir() and not is_litter(d) and not split_named(d.name) and list_files(d, self.suffixes)
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Sample:
        path = self.files[index]
        image, valid = rgb_image(open_image(path), path)
        if self.image_size is not None:
            if valid is not None:
                raise ValueError(f"{path}: resizing images with transparent pixels is not supported")
            image = resize_square(image, self.image_size, self.resize, path)
        label = self.targets[index]
        return Sample(
            hr=to_chw_float(image),
            hr_valid=None if valid is None else torch.from_numpy(valid),
            target=label,
            meta={"source": str(path), "id": path.stem, "class_name": self.classes[label]},
        )


class SceneFolder(ImageFolderClassification):
    """Your own scene-classification images, one folder per class (``root/<ClassName>/*.jpg``, as UC Merced,
    RESISC45, PatternNet, WHU-RS19 and EuroSAT ship), or split folders of them (``root/train/<ClassName>/…``).

    The classes are the class folders found, in sorted order (or ``classes``, to fix the order or keep a subset).
    RGB images (JPEG, PNG, 8-bit TIFF) in the HR role; ``image_size`` resizes (or centre-crops) them to a side the
    HR encoder takes. Splits as :class:`ImageFolderClassification` (default 0.6/0.2/0.2 without split folders).
    """

    suffixes = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
