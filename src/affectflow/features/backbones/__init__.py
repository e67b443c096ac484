"""The built-in backbones; importing a module registers its names in ``BACKBONES``.

Modules import torch, transformers or dlib inside functions, so registering costs no heavy import.
"""

from affectflow.features.backbones import (  # noqa: F401
    dino,
    dlib_face,
    ecapa,
    fbank,
    fer_tflite,
    finetuned,
    iresnet,
    landmarks,
    mae,
    mfcc,
    openface,
    smile,
    speech,
    torch_image,
    vggish,
    vidmimic,
)
