"""Image datasets as whole splits of uint8 images, in memory or, when larger than memory, read from disk.

Evaluation here is bound by the models, not by JPEG decoding: a split is
decoded once (over every core), cached as checksummed ``.npy`` shards, and afterwards loads in a fraction
of a second as ``images`` (N x 3 x H x W, uint8) and ``labels`` (N, int64). ``images`` is a tensor when the
split takes at most ``IN_MEMORY_BYTES`` (1 GiB; ``in_memory=`` decides otherwise), else a
:class:`ShardedImages` that reads just the images indexed (``images[a:b]``, ``images[index]``: tensors) from the
shards, so that a data set larger than memory is evaluated and trained on a batch at a time.

A data set is named (``"cifar10"``) or given by path (``"data/tiny-imagenet-200"``,
``"~/imagenette.tar.gz"``: anything with a ``/``, a leading ``~`` or an
archive suffix, or a :class:`~pathlib.Path`). A named one is looked for, in order, in

1. ``data_root`` given by the caller (``--data-root`` on the command line);
2. the environment variable ``SEMCOMM_DATA``;
3. ``../shared/data`` next to the current directory or next to the checkout;

as an ImageFolder tree ``<name>/<split>/...``, an archive of one
``<name>.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` (extracted once into the
cache; a single top folder named ``<name>`` inside is fine), or
torchvision's CIFAR on-disk format (``cifar-10-batches-py`` / ``cifar-100-python``).

A split folder is labelled in one of two ways (:mod:`semcomm.data.folders`, :func:`load_image_folder`):

* class folders: ``<split>/<class>/<image>``, images at any depth below
  their class folder (``train/n01443537/images/n01443537_0.JPEG``);
* an annotations file ``<split>/*annotations.txt`` (Tiny-ImageNet's
  ``val_annotations.txt``), one ``file<TAB>class[<TAB>...]`` line per image,
  the images anywhere below the split folder.

Labels index the training split's classes, sorted by name, in every split
(a validation split without some class still labels the others as
training does). A class folder with no image is an error naming it, in
every split (dropped, it would shift every later class's label). Annotated
files that do not exist refuse the split, or with ``skip_missing=True`` are
skipped with a :class:`DataWarning` naming how many and which.

Every image becomes 8-bit RGB (:mod:`semcomm.data.pixels`): gray, palette,
alpha, 1-bit and CMYK images converted, 16-bit images by their high byte,
float images in [0, 1] scaled by 255; ``image_size`` resizes the shorter
side and centre-crops a square. An image that cannot be decoded, or whose
header claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, is a one-line
ValueError naming the file.

Images without labels (Tiny-ImageNet's ``test/``, any folder of images)
load for prediction with :func:`load_images`: the images and each one's
file name, not cached.

The cache is keyed by the source's content: an archive's path, size and
modification time, or a folder's path, its class folders and every image's
relative path, size and modification time (plus the training split's
classes and ``image_size``). Changed or different data with the same name
are decoded afresh, never served stale (:mod:`semcomm.data.cache`). A cache
shard found damaged (changed, truncated, missing) is decoded again when first
read, with a :class:`DataWarning` naming it (:mod:`semcomm.data.shards`).

The modules, in the order a split is loaded: ``locate`` (data roots, names and paths), ``archives``
(extracted once), ``folders`` (split folders: files, annotations, classes), ``pixels`` (one image file to
8-bit RGB), ``parallel`` (a process pool, results in order), ``decode`` (images to arrays, a chunk at a time),
``shards`` (checksummed image shards on disk), ``cache`` (the decoded shards, keyed by content), ``load``
(:func:`load_split`, :func:`load_images` and the splits of a data set); ``image_split`` holds
:class:`ImageSplit` and :class:`UnlabelledImages`, ``sharded`` :class:`ShardedImages`.
"""
from semcomm.data.decode import check_image_size, load_image_folder, square_image
from semcomm.data.folders import DataWarning
from semcomm.data.image_split import ImageSplit, UnlabelledImages
from semcomm.data.load import available_splits, evaluation_split, load_images, load_split
from semcomm.data.locate import DataLocation, DataNotFoundError, candidate_data_roots, is_data_path, locate
from semcomm.data.sharded import ShardedImages, require_in_memory, update_digest

__all__ = [
    "DataLocation", "DataNotFoundError", "DataWarning", "ImageSplit", "ShardedImages", "UnlabelledImages",
    "available_splits", "candidate_data_roots", "check_image_size", "evaluation_split", "is_data_path",
    "load_image_folder", "load_images", "load_split", "locate", "require_in_memory", "square_image", "update_digest",
]
