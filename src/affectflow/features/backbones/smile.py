"""openSMILE feature sets (eGeMAPSv02, ComParE_2016): low-level descriptors and functionals."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from affectflow.features.base import AudioBackbone, empty_features
from affectflow.features.registry import BACKBONES

# (feature set, level) -> dimension, as openSMILE 2.6 defines them.
SMILE_DIMS = {
    ("eGeMAPSv02", "lld"): 25,
    ("eGeMAPSv02", "functionals"): 88,
    ("ComParE_2016", "lld"): 65,
    ("ComParE_2016", "functionals"): 6373,
}
# Shorter audio has too few frames for openSMILE's pitch and jitter trackers.
MIN_SECONDS = 0.1


class _Smile(AudioBackbone):
    feature_set = ""
    level = ""

    def __init__(self) -> None:
        self.params = {}
        self.dim = SMILE_DIMS[(self.feature_set, self.level)]
        self._smile = None

    def provenance(self) -> dict:
        """No weights; opensmile's version decides the numbers."""
        return {"weights_sha256": "", "package_version": f"opensmile {importlib.metadata.version('opensmile')}"}

    def _extractor(self):
        if self._smile is None:
            import opensmile

            level = {"lld": opensmile.FeatureLevel.LowLevelDescriptors,
                     "functionals": opensmile.FeatureLevel.Functionals}[self.level]
            self._smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                                          feature_level=level)
        return self._smile

    def extract(self, samples: np.ndarray, sample_rate: int):
        """LLD: (T, d) per 10 ms frame; functionals: one row for the clip at its centre time."""
        if samples.size < MIN_SECONDS * sample_rate:
            return empty_features(self.dim)
        frame = self._extractor().process_signal(samples.astype(np.float32) / 32768.0, sample_rate)
        # openSMILE leaves NaN where a descriptor is undefined (no voiced frame in silence); 0 is its
        # own convention for "unvoiced" in the F0 descriptors.
        features = np.nan_to_num(frame.to_numpy(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if features.shape[1] != self.dim:
            raise ValueError(f"openSMILE {self.feature_set} {self.level} gave {features.shape[1]} columns, "
                             f"expected {self.dim}")
        starts = frame.index.get_level_values("start").total_seconds().to_numpy()
        ends = frame.index.get_level_values("end").total_seconds().to_numpy()
        return features, (starts + ends) / 2


def _register(name: str, feature_set: str, level: str, doc: str) -> None:
    cls = type(name, (_Smile,), {"feature_set": feature_set, "level": level, "__doc__": doc,
                                 "__init__": lambda self: _Smile.__init__(self)})
    BACKBONES.register(name)(cls)


_register("egemaps_v02_lld", "eGeMAPSv02", "lld", "eGeMAPSv02 low-level descriptors, 25-d per 10 ms frame.")
_register("egemaps_v02_func", "eGeMAPSv02", "functionals", "eGeMAPSv02 functionals, one 88-d row per clip.")
_register("compare_2016_lld", "ComParE_2016", "lld", "ComParE 2016 low-level descriptors, 65-d per 10 ms frame.")
_register("compare_2016_func", "ComParE_2016", "functionals", "ComParE 2016 functionals, one 6373-d row per clip.")
