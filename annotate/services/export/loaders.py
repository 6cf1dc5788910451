"""What the dataset loaders need of an export's names, so that every loader gives each image
the class index that train.txt and val.txt give it.

- torchvision's ImageFolder, torchvision's ImageNet and Hugging Face's imagefolder number the
  class folders in code-point order; timm's folder reader in "natural" order (case-insensitive,
  runs of digits compared as numbers). For WordNet ids (n + 8 digits) both orders are one. For
  other label ids ("Cat", "bird10", "bird9") they differ, so when any exported id is not a
  WordNet id every class folder is named `<index>_<id>`, the index zero-padded to the same
  width: then both orders are the index order.
- The "flat" val layout is ImageNet's validation layout for evaluation scripts:
  val/ILSVRC2012_val_%08d.JPEG with val_ground_truth.txt and LOC_val_solution.csv, plus a
  metadata.csv (file_name,label: the class index) in train/ and in val/, from which Hugging
  Face's imagefolder reads the labels of both splits (it reads them from a metadata file or
  from folder names, not from a mix).
"""

from __future__ import annotations

import re

WNID = re.compile(r"n\d{8}")
VAL_NAME = "ILSVRC2012_val_{:08d}"


def class_folders(ids: list[str]) -> list[str]:
    """The folder name of each class, `ids` being the label ids in class-index order."""
    if all(WNID.fullmatch(label_id) for label_id in ids):
        return list(ids)
    width = max(3, len(str(len(ids) - 1)))
    return [f"{index:0{width}d}_{label_id}" for index, label_id in enumerate(ids)]


def val_name(number: int) -> str:
    """The flat layout's name of its `number`th val image (from 1), without the extension."""
    return VAL_NAME.format(number)


def metadata_line(file_name: str, index: int) -> str:
    """A line of metadata.csv. Paths are our own (folder names of letters, digits, '_', '.',
    '-'), so no field needs CSV quoting."""
    return f"{file_name},{index}\n"
