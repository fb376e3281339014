"""Data: readers and writers of the field's formats, transforms, alignment, label noise.

Every reader yields RGB uint8 images turned into (3, H, W) tensors by a transform, and
names the file and record or line in its errors. The built-in glyph demo set lives in
``sphereface2.data.demo_glyphs`` (imported on demand: it needs the fonts of matplotlib).
"""

from sphereface2.data.alignment import (
    REFERENCE_LANDMARKS_112,
    align_face,
    align_images,
    estimate_similarity_transform,
    read_landmarks_file,
    warp_affine,
)
from sphereface2.data.bin_format import BinPairDataset, BinPairs, read_bin, write_bin
from sphereface2.data.decode import ImageDecodeError, decode_image, encode_jpeg, read_image
from sphereface2.data.image_folder import ImageFolderDataset, scan_image_folder
from sphereface2.data.inspect import format_inspection, inspect_path
from sphereface2.data.label_noise import NoisyLabelDataset, inject_label_noise
from sphereface2.data.list_file import ListFileDataset, read_list_file, read_training_list
from sphereface2.data.packing import (
    PackOutputExistsError,
    pack_pairs,
    pack_training_set,
    write_recordio,
)
from sphereface2.data.pairs import (
    PairImageDataset,
    PairList,
    check_images_exist,
    read_lfw_pairs,
    read_pair_list,
)
from sphereface2.data.recordio import (
    IRHeader,
    RecordIOError,
    RecordIOReader,
    RecordIOWriter,
    pack_record,
    unpack_record,
)
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.safe_pickle import UnsafePickleError
from sphereface2.data.training_sets import detect_training_set, open_training_set
from sphereface2.data.transforms import FaceTransform, eval_transform, to_tensor, train_transform

__all__ = [
    "REFERENCE_LANDMARKS_112",
    "BinPairDataset",
    "BinPairs",
    "FaceTransform",
    "IRHeader",
    "ImageDecodeError",
    "ImageFolderDataset",
    "ListFileDataset",
    "NoisyLabelDataset",
    "PackOutputExistsError",
    "PairImageDataset",
    "PairList",
    "RecordIODataset",
    "RecordIOError",
    "RecordIOReader",
    "RecordIOWriter",
    "UnsafePickleError",
    "align_face",
    "align_images",
    "check_images_exist",
    "decode_image",
    "detect_training_set",
    "encode_jpeg",
    "estimate_similarity_transform",
    "eval_transform",
    "format_inspection",
    "inject_label_noise",
    "inspect_path",
    "open_training_set",
    "pack_pairs",
    "pack_record",
    "pack_training_set",
    "read_bin",
    "read_image",
    "read_landmarks_file",
    "read_lfw_pairs",
    "read_list_file",
    "read_pair_list",
    "read_training_list",
    "scan_image_folder",
    "to_tensor",
    "train_transform",
    "unpack_record",
    "warp_affine",
    "write_bin",
    "write_recordio",
]
