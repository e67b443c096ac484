"""Link per-frame detections into tracks and choose the main face of a clip.

When several people appear, taking the largest face of each frame can jump between them. We link
detections of consecutive detected frames by box overlap, then keep the track with the largest
total face area over the clip: a face that is both big and present most of the time ("largest
and most stable"). The choice and its margin over the runner-up are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from affectflow.faces.registry import Detection


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """Detections of one face: frame index -> detection."""

    detections: dict[int, Detection] = field(default_factory=dict)

    @property
    def last_frame(self) -> int:
        return max(self.detections)

    @property
    def total_area(self) -> float:
        return float(sum(d.area for d in self.detections.values()))


@dataclass(frozen=True)
class TrackChoice:
    """Which track was kept, and why: recorded in the shard."""

    n_tracks: int
    main_track: int  # index in the list of tracks (-1: no face)
    main_frames: int
    main_area: float  # total box area of the main track
    runner_up_area: float  # the same for the second track (0 when alone)

    def as_attrs(self) -> dict:
        return {"n_tracks": self.n_tracks, "main_track": self.main_track, "main_track_frames": self.main_frames,
                "main_track_area": round(self.main_area, 1), "runner_up_area": round(self.runner_up_area, 1)}


def link_tracks(detections: dict[int, list[Detection]], *, min_iou: float = 0.3, max_gap: int = 12) -> list[Track]:
    """Greedy IoU linking: each detection joins the best-overlapping track seen within ``max_gap`` frames.

    ``detections`` maps frame index -> faces of that frame (frames never detected are absent).
    """
    tracks: list[Track] = []
    for frame in sorted(detections):
        open_tracks = [t for t in tracks if frame - t.last_frame <= max_gap]
        pairs = []
        for di, det in enumerate(detections[frame]):
            for ti, track in enumerate(open_tracks):
                overlap = box_iou(det.box, track.detections[track.last_frame].box)
                if overlap >= min_iou:
                    pairs.append((overlap, di, ti))
        used_d, used_t = set(), set()
        for _, di, ti in sorted(pairs, reverse=True):
            if di in used_d or ti in used_t:
                continue
            open_tracks[ti].detections[frame] = detections[frame][di]
            used_d.add(di)
            used_t.add(ti)
        for di, det in enumerate(detections[frame]):
            if di not in used_d:
                tracks.append(Track({frame: det}))
    return tracks


def choose_main_track(tracks: list[Track], *, side: str | None = None) -> tuple[Track | None, TrackChoice]:
    """The track with the largest total box area, and the record of the choice.

    ``side`` ("left" or "right") is for Aff-Wild2's ``<video>_left`` / ``<video>_right``
    annotation tracks, two people sharing one video: among the substantial tracks (at least a
    quarter of the largest total area, so a passing face in the background does not count) the
    one whose boxes lie furthest to that side is kept.
    """
    if not tracks:
        return None, TrackChoice(0, -1, 0, 0.0, 0.0)
    if side not in (None, "left", "right"):
        raise ValueError(f"side must be None, 'left' or 'right', not {side!r}")
    areas = np.array([t.total_area for t in tracks])
    order = np.argsort(-areas, kind="stable")
    best = int(order[0])
    if side is not None:
        substantial = [i for i in range(len(tracks)) if areas[i] >= 0.25 * areas[best]]
        centre_x = {i: float(np.mean([(d.box[0] + d.box[2]) / 2 for d in tracks[i].detections.values()]))
                    for i in substantial}
        best = (min if side == "left" else max)(substantial, key=lambda i: centre_x[i])
    runner = float(max((areas[i] for i in range(len(tracks)) if i != best), default=0.0))
    return tracks[best], TrackChoice(len(tracks), best, len(tracks[best].detections), float(areas[best]), runner)
