"""Listing the videos to predict: names, stable ids and shards, list files, and their manifest."""

from __future__ import annotations

import subprocess

import pytest

from affectflow.data import read_manifest
from affectflow.data.shards import shard_of
from affectflow.predict.videos import PREDICT_SPLIT, list_videos, read_video_paths, write_video_manifest
from affectflow.runtime.ffmpeg import ffmpeg_exe


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_listing_names_ids_and_shards(tmp_path):
    for rel in ("a.mp4", "sub/b.MOV", "sub/deeper/c.webm", "notes.txt", "sub/d.wav"):
        _touch(tmp_path / "set" / rel)
    listing = list_videos(tmp_path / "set", n_shards=3)
    clips = listing.clips.set_index("name")
    # only video suffixes (any case); names relative to the folder given, "/" written "__"
    assert sorted(clips.index) == ["a", "sub__b", "sub__deeper__c"]
    assert clips.at["sub__b", "media"] == str(tmp_path / "set" / "sub" / "b.MOV")  # absolute, under root "/"
    assert set(clips["split"]) == {PREDICT_SPLIT}
    assert listing.shards == ("0", "1", "2")
    for _, row in clips.iterrows():
        assert row["shard"] == str(shard_of(int(row["id"]), 3))
    # adding a video moves no other video: ids and shards come from the names, not the ranks
    _touch(tmp_path / "set" / "0first.mp4")
    again = list_videos(tmp_path / "set", n_shards=3).clips.set_index("name")
    assert again.loc[clips.index, ["id", "shard"]].equals(clips[["id", "shard"]])
    # the fingerprint follows the file: a replaced video changes it
    _touch(tmp_path / "set" / "a.mp4", b"longer content")
    assert list_videos(tmp_path / "set", n_shards=3).clips.set_index("name").at["a", "fingerprint"] != \
        clips.at["a", "fingerprint"]


def test_list_file_paths_relative_to_it_comments_and_missing_videos(tmp_path):
    good = _touch(tmp_path / "videos" / "one.mp4")
    listed = tmp_path / "lists" / "set.txt"
    listed.parent.mkdir()
    listed.write_text(f"# my set\n\n../videos/one.mp4\n{tmp_path / 'videos' / 'gone.mp4'}\n")
    paths = read_video_paths(listed)
    # sorted; the missing one kept (its row says so); names relative to the list file's folder
    assert paths == [(tmp_path / "videos" / "gone.mp4", listed.parent), (good, listed.parent)]
    clips = list_videos([listed], n_shards=1).clips
    assert list(clips.sort_values("name")["name"]) == ["gone", "one"]
    assert clips.set_index("name").at["gone", "fingerprint"] == "missing"


def test_bad_video_arguments_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_videos(tmp_path / "nowhere", n_shards=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video .* in .*empty"):
        list_videos(tmp_path / "empty", n_shards=1)


def test_manifest_probes_frame_rate_and_count_for_per_frame_tasks(tmp_path):
    video = tmp_path / "v.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=2",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    _touch(tmp_path / "broken.mp4", b"")
    listing = list_videos(tmp_path, n_shards=1)
    clips = listing.partition_clips(PREDICT_SPLIT, fingerprints=True)
    per_frame = write_video_manifest(clips, listing.root, tmp_path / "m.tsv", per_frame=True)
    read = read_manifest(tmp_path / "m.tsv").set_index("name")
    assert read.at["v", "fps"] == 25.0 and read.at["v", "frames"] == 50
    assert read.at["broken", "frames"] == 0  # cannot be probed: kept, no frame rate
    assert read.at["v", "media"] == str(video)
    assert len(per_frame) == 2
    clip_rows = write_video_manifest(clips, listing.root, tmp_path / "c.tsv", per_frame=False)
    assert "frames" not in clip_rows.columns and len(clip_rows) == 2


def test_names_stay_when_videos_are_added_elsewhere_and_collisions_are_named(tmp_path):
    _touch(tmp_path / "f" / "s1" / "a.mp4")
    before = list_videos(tmp_path / "f", n_shards=2).clips
    assert list(before["name"]) == ["s1__a"]
    _touch(tmp_path / "f" / "s2" / "b.mp4")
    _touch(tmp_path / "f" / ".hidden" / "c.mp4")  # hidden folders and files are not videos
    _touch(tmp_path / "f" / "._a.mp4")
    after = list_videos(tmp_path / "f", n_shards=2).clips.set_index("name")
    assert sorted(after.index) == ["s1__a", "s2__b"]
    assert after.at["s1__a", "id"] == before["id"].iloc[0]
    # same stem, other suffix: both keep their suffix
    _touch(tmp_path / "g" / "x.mp4")
    _touch(tmp_path / "g" / "x.mov")
    assert sorted(list_videos(tmp_path / "g", n_shards=1).clips["name"]) == ["x.mov", "x.mp4"]
    # the same name from two places: refused, naming both files
    _touch(tmp_path / "h" / "a" / "b.mp4")
    _touch(tmp_path / "h" / "a__b.mp4")
    with pytest.raises(ValueError, match=r"a/b\.mp4 and .*a__b\.mp4|a__b\.mp4 and .*a/b\.mp4"):
        list_videos(tmp_path / "h", n_shards=1)
