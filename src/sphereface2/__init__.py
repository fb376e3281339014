"""sphereface2: deep face recognition with the SphereFace2 binary-classification loss.

The package follows the data's path: ``data`` (readers, transforms) -> ``backbones``
(images to embeddings) -> ``heads`` (embeddings and labels to a loss) -> ``train`` ->
``evaluate`` and ``export``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``sphereface2.load_model`` without importing torch at ``import sphereface2``."""
    if name == "load_model":
        from sphereface2.inference import load_model

        return load_model
    raise AttributeError(f"module 'sphereface2' has no attribute {name!r}")
