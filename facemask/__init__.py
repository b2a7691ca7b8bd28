"""facemask: mask / gender / age face classifiers (18 classes) scored by macro F1.

    import facemask
    model = facemask.load("runs/cpu-20261129-184531")
    for face in model.predict("photo.jpg"):
        print(face.box, face.mask, face.gender, face.age, face.probs["mask"])

``load`` (facemask.inference.api) is imported on first use, so ``import facemask`` stays light.
"""

__version__ = "0.2.0"
__all__ = ["Face", "Model", "load", "__version__"]


def __getattr__(name: str):
    if name in ("load", "Model", "Face"):
        from facemask.inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'facemask' has no attribute {name!r}")
