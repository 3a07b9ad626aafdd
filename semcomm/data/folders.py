"""ImageFolder split folders: their image files, the class of each, and the classes of a split.

A split folder is labelled in one of two ways:

* class folders: ``<split>/<class>/<image>``, images at any depth below
  their class folder (``train/n01443537/images/n01443537_0.JPEG``);
* an annotations file ``<split>/*annotations.txt`` (Tiny-ImageNet's
  ``val_annotations.txt``), one ``file<TAB>class[<TAB>...]`` line per image,
  the images anywhere below the split folder.

Labels index the training split's classes (:data:`TRAIN_SPLIT`), sorted by name, in every split. A class
folder with no image is an error naming it, in every split (dropping it would shift every later class's label);
annotated files that do not exist are an error, or skipped with a :class:`DataWarning` naming them when asked.
"""
from __future__ import annotations

import os
from pathlib import Path

from semcomm.data.locate import DataNotFoundError

IMAGE_SUFFIXES = {".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".pnm", ".ppm", ".tif", ".tiff", ".webp"}
TRAIN_SPLIT = "train"  # the split whose classes every split's labels index
SHOWN = 10  # names listed in a warning before "and N more"


class DataWarning(UserWarning):
    """Something in a data set was left out on request (e.g. annotated files that do not exist, skipped)."""


def _visible(name: str) -> bool:
    """False for hidden files and folders and macOS's ``__MACOSX``, which no split or class includes."""
    return not name.startswith(".") and name != "__MACOSX"


def subfolders(folder: Path) -> list[str]:
    """Names of the visible sub-folders of ``folder``, sorted (hidden ones and macOS's ``__MACOSX`` left out)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p.name))


def _walk_images(folder: Path):
    """Every visible image file below ``folder`` (any depth), in the order the folders are walked."""
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = [d for d in subdirs if _visible(d)]
        yield from (Path(directory, n) for n in names if _visible(n) and Path(n).suffix.lower() in IMAGE_SUFFIXES)


def image_files(folder: Path) -> list[Path]:
    """Every image file below ``folder`` (any depth; hidden files and folders skipped), sorted by path."""
    return sorted(_walk_images(folder))


def annotations_file(folder: Path) -> Path | None:
    """The split's ``*annotations.txt`` file, if it has one."""
    found = sorted(p for p in folder.glob("*annotations.txt") if p.is_file())
    if len(found) > 1:
        raise ValueError(f"{folder} has {len(found)} annotations files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def read_annotations(path: Path) -> list[tuple[str, str]]:
    """(file, class) per non-blank line of a tab-separated annotations file (``file<TAB>class[<TAB>...]``)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise ValueError(f"{path} line {number}: expected 'file<TAB>class[<TAB>...]', got {line[:80]!r}")
        rows.append((fields[0], fields[1]))
    return rows


def split_classes(folder: Path) -> list[str]:
    """Class names of a split folder, sorted: its annotated classes, or else its class sub-folders (each must hold
    an image: :func:`folder_classes`)."""
    annotations = annotations_file(folder)
    if annotations is not None:
        return sorted({cls for _, cls in read_annotations(annotations)})
    return folder_classes(folder)


def folder_classes(folder: Path) -> list[str]:
    """The class sub-folders of a split labelled by folders, sorted.

    Raises:
        ValueError: naming a class folder with no image at any depth below it (dropping it would give every later
            class another index than in the splits that have it).
    """
    classes = subfolders(folder)
    empty = [cls for cls in classes if next(_walk_images(folder / cls), None) is None]
    if empty:
        more = f" (nor do {len(empty) - 1} more: {_listed(empty[1:])})" if len(empty) > 1 else ""
        raise ValueError(f"class folder {folder / empty[0]} holds no images{more}; every class folder needs at least "
                         f"one image with one of {sorted(IMAGE_SUFFIXES)} below it: add images or remove the folder")
    return classes


def split_folder(dataset: Path, split: str) -> Path:
    """The folder of ``split`` in a data set folder; :class:`DataNotFoundError` naming the splits it has."""
    folder = dataset / split
    if not folder.is_dir():
        raise DataNotFoundError(f"data set {dataset} has no split {split!r}; it has {subfolders(dataset)}")
    return folder


def reference_classes(dataset: Path) -> list[str] | None:
    """The training split's classes, which every split's labels index, the training split's own included (None:
    no training split, so each split's own)."""
    train = dataset / TRAIN_SPLIT
    return split_classes(train) if train.is_dir() else None


def labelled_files(folder: Path, skip_missing: bool = False) -> tuple[list[tuple[Path, str]], str | None]:
    """(image file, class name) for every image of a split folder, by annotations file or class folder, and a
    warning naming the annotated files that were skipped because no such image exists (``skip_missing``; else
    they are an error), or None."""
    if not folder.is_dir():
        raise DataNotFoundError(f"ImageFolder split {folder} is not a directory")
    files = image_files(folder)
    annotations = annotations_file(folder)
    if annotations is not None and files:
        return _annotated_files(annotations, folder, files, skip_missing)
    loose = [f for f in files if f.parent == folder]
    if loose:
        raise ValueError(f"{folder} holds {len(loose)} images outside class folders (e.g. {loose[0].name}); expected "
                         f"{folder.name}/<class>/<image> or a tab-separated annotations file "
                         f"{folder.name}/*annotations.txt")
    if files and subfolders(folder) == ["images"]:
        raise ValueError(f"{folder} has only an images/ folder and no annotations file, so no labels: the split looks "
                         f"unlabelled (expected <class>/ folders, or *annotations.txt with lines file<TAB>class)")
    if annotations is None:
        folder_classes(folder)  # refuses an empty class folder
    if not files:
        raise DataNotFoundError(f"no images found under {folder}: expected {folder}/<class>/<image> with one of "
                                f"{sorted(IMAGE_SUFFIXES)}, or an annotations file")
    return [(f, f.relative_to(folder).parts[0]) for f in files], None


def _annotated_files(annotations: Path, folder: Path, files: list[Path],
                     skip_missing: bool) -> tuple[list[tuple[Path, str]], str | None]:
    """Match each annotated file name (a path relative to ``folder`` or a bare file name) to one image; names of no
    image are an error, or with ``skip_missing`` skipped and named in the warning returned."""
    by_path = {f.relative_to(folder).as_posix(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    labelled: dict[Path, str] = {}
    unknown, ambiguous = [], []
    for name, cls in read_annotations(annotations):
        matches = [by_path[name]] if name in by_path else by_name.get(name, [])
        if not matches:
            unknown.append(name)
        elif len(matches) > 1:
            ambiguous.append(name)
        elif matches[0] in labelled:
            raise ValueError(f"{annotations} labels {name} twice")
        else:
            labelled[matches[0]] = cls
    if unknown and not skip_missing:
        raise ValueError(f"{annotations} names {len(unknown)} files that are not images under {folder} "
                         f"(e.g. {', '.join(unknown[:3])}); skip them with skip_missing=True")
    if ambiguous:
        raise ValueError(f"{annotations} names files found more than once under {folder} (e.g. {ambiguous[0]}); "
                         "give their paths relative to the split folder")
    missing = [f for f in files if f not in labelled]
    if missing:
        raise ValueError(f"{len(missing)} images under {folder} are not in {annotations.name} "
                         f"(e.g. {missing[0].relative_to(folder)})")
    skipped = (f"{annotations} names {len(unknown)} files that are not images under {folder}; skipped them: "
               f"{_listed(unknown)}") if unknown else None
    return list(labelled.items()), skipped


def _listed(names: list[str]) -> str:
    """The first :data:`SHOWN` names, comma-separated, and how many more there are."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
