"""sphereface2: deep face recognition with the SphereFace2 binary-classification loss.

The package follows the data's path: ``data`` (readers, transforms) -> ``backbones``
(images to embeddings) -> ``heads`` (embeddings and labels to a loss) -> ``train`` ->
``evaluate`` and ``export``.
"""

__version__ = "0.1.0"
