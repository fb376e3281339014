"""Using a trained model: embed face images, compare two faces, search a gallery.

- :func:`load_model` opens a checkpoint, run folder, safetensors export or ONNX file as a
  :class:`FaceModel` (``embed`` and ``compare`` on file paths, arrays or PIL images, with
  the model's own preprocessing);
- :mod:`~sphereface2.inference.threshold`: the verdict threshold from an evaluation report;
- :mod:`~sphereface2.inference.gallery` and :mod:`~sphereface2.inference.gallery_search`:
  build a gallery of known identities and find the closest ones to query images, exactly
  (:mod:`~sphereface2.inference.search`) or with an optional faiss index
  (:mod:`~sphereface2.inference.faiss_index`).

This floor sits above ``evaluate`` (model loading) and ``data`` (decoding, transforms);
nothing below imports it.
"""

from sphereface2.inference.face_model import FaceModel, load_model

__all__ = ["FaceModel", "load_model"]
