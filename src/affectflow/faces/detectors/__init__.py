"""The built-in face detectors; importing a module registers its name in ``DETECTORS``."""

from affectflow.faces.detectors import dlib_hog, mtcnn  # noqa: F401
