"""The start-up listing: partitions, stable shards, fingerprints, label files."""

from __future__ import annotations

import os

import pytest

from affectflow.data import affwild2
from affectflow.data.listing import count_test_shards, fingerprint, label_files, read_listing
from affectflow.data.shards import shard_of
from affectflow.tasks import EMI_HEADER, emi_media_name


def write_emi(root, train, val, test):
    """Split csvs and raw/ files (a few bytes each: the listing opens none of them)."""
    (root / "raw").mkdir(parents=True, exist_ok=True)
    for ids, name in ((train, "train_split.csv"), (val, "valid_split.csv")):
        rows = [",".join(EMI_HEADER)] + [",".join([str(i)] + ["0.5"] * (len(EMI_HEADER) - 1)) for i in ids]
        (root / name).write_text("\n".join(rows) + "\n")
    for i in [*train, *val, *test]:
        (root / "raw" / emi_media_name(i)).write_bytes(b"clip %d" % i)


def test_test_clips_get_their_own_shards_and_adding_clips_moves_none(tmp_path):
    write_emi(tmp_path, train=range(0, 40), val=range(40, 60), test=range(60, 80))
    before = read_listing("emi", tmp_path, n_shards=4, test_shards=3).clips.set_index("id")
    assert set(before.loc[before["split"] != "test", "shard"]) == {"0", "1", "2", "3"}
    assert set(before.loc[before["split"] == "test", "shard"]) == {"test0", "test1", "test2"}
    for i, shard in before["shard"].items():  # the shard is the stable hash within the partition
        assert shard.removeprefix("test") == str(shard_of(i, 3 if shard.startswith("test") else 4))

    for i in range(80, 130):  # the organisers release more test videos
        (tmp_path / "raw" / emi_media_name(i)).write_bytes(b"late")
    after = read_listing("emi", tmp_path, n_shards=4, test_shards=3).clips.set_index("id")
    assert len(after) == 130
    assert after.loc[before.index, "shard"].tolist() == before["shard"].tolist()
    assert (after.loc[range(80, 130), "partition"] == "test").all()


def test_shard_clips_carry_the_fingerprint_of_each_file(tmp_path):
    write_emi(tmp_path, train=range(0, 6), val=range(6, 8), test=range(8, 10))
    listing = read_listing("emi", tmp_path, n_shards=2)
    shard = listing.clips.set_index("id").at[0, "shard"]
    clips = {c[0]: c for c in listing.shard_clips(shard)}
    assert clips[0][1:3] == ("0", "raw/" + emi_media_name(0))  # name and media relative to the root
    assert clips[0][3] == fingerprint(tmp_path / "raw" / emi_media_name(0))
    assert listing.partition_shards("test") == ["test0"] and listing.partition_shards("labelled") == ["0", "1"]
    # the manifest jobs' values: a partition's clips, fingerprints only when asked for
    assert {c[0] for c in listing.partition_clips("test", fingerprints=False)} == {8, 9}
    assert all(len(c) == 4 for c in listing.partition_clips("labelled", fingerprints=False))


def test_a_replaced_file_changes_its_fingerprint_even_with_an_older_time(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"original content")
    first = fingerprint(path)
    stat = os.stat(path)
    path.write_bytes(b"re-downloaded, longer content")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**12))  # an older time than before
    assert fingerprint(path) != first
    path.write_bytes(b"original content")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(path) == first  # the same file back: the same fingerprint
    assert fingerprint(tmp_path / "absent.mp4") == "missing"


def test_default_test_shards_are_a_third_of_the_labelled_ones():
    assert [count_test_shards(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 3, 22]
    assert count_test_shards(8, 5) == 5


def test_affwild2_listing_opens_no_video_and_label_files_are_the_annotation_files(tmp_path, monkeypatch):
    from affectflow.testing import make_affwild2

    root = make_affwild2(tmp_path / "aw", n_videos=4, two_person=True)

    def refuse(*args, **kwargs):
        raise AssertionError("the listing must not open a video")

    monkeypatch.setattr(affwild2, "probe_video", refuse)
    monkeypatch.setattr(affwild2, "parse_annotation", refuse)
    listing = read_listing("va", root, n_shards=2)
    clips = listing.clips
    assert set(clips["partition"]) == {"labelled", "test"}
    assert (clips["fingerprint"] != "missing").all()
    files = label_files("va", root)
    annotated = sorted(str(p) for p in (root / "Annotations" / "VA_Estimation_Challenge").rglob("*.txt"))
    assert sorted(files) == annotated and len(files) == (clips["partition"] == "labelled").sum()


def test_a_malformed_split_file_fails_the_listing_naming_it(tmp_path):
    write_emi(tmp_path, train=range(0, 4), val=range(4, 6), test=[])
    (tmp_path / "train_split.csv").write_text("Filename,Joy\n1,0.5\n")
    with pytest.raises(Exception, match="train_split.csv"):
        read_listing("emi", tmp_path, n_shards=2)


def test_eri_labels_digest_sees_a_label_edit_and_not_a_new_test_row(tmp_path):
    """The labelled manifest's values: ERI's data_info.csv holds the test rows too, and a new test row
    must not re-run training, while an edited label must."""
    from affectflow.testing import make_reaction

    root = make_reaction(tmp_path / "eri", layout="data_info", n_clips=12)
    info = root / "data_info.csv"
    lines = info.read_text().splitlines()
    first = read_listing("eri", root, n_shards=2)
    labelled = first.partition_clips("labelled", fingerprints=False)

    (root / "raw" / "99999.mp4").write_bytes(b"a new test clip")
    info.write_text("\n".join([*lines, "[99999],Test,,,,,,,,30,United States"]) + "\n")
    added = read_listing("eri", root, n_shards=2)
    assert added.labels == first.labels
    assert added.partition_clips("labelled", fingerprints=False) == labelled
    assert 99999 in {c[0] for c in added.partition_clips("test", fingerprints=False)}

    row = next(i for i, line in enumerate(lines) if ",Train," in line)
    cells = lines[row].split(",")
    cells[2] = "0.5" if cells[2] != "0.500000" else "0.25"
    info.write_text("\n".join([*lines[:row], ",".join(cells), *lines[row + 1:]]) + "\n")
    assert read_listing("eri", root, n_shards=2).labels != first.labels


def test_a_manifest_job_fails_when_the_data_set_changed_after_the_listing(tmp_path):
    from affectflow.data import DatasetError, write_manifest_job

    write_emi(tmp_path, train=range(0, 6), val=range(6, 8), test=range(8, 10))
    listed = [c[0] for c in read_listing("emi", tmp_path, n_shards=2).partition_clips("test", fingerprints=False)]
    (tmp_path / "raw" / emi_media_name(10)).write_bytes(b"added while the run was starting")
    kwargs = dict(n_shards=2, k_folds=2, seed=0, listed_ids=listed)
    with pytest.raises(DatasetError, match=r"added: \[10\]"):
        write_manifest_job("emi", tmp_path, "test", tmp_path / "t.tsv", **kwargs)
    assert not (tmp_path / "t.tsv").exists()
    write_manifest_job("emi", tmp_path, "test", tmp_path / "t.tsv", **{**kwargs, "listed_ids": [*listed, 10]})
    assert (tmp_path / "t.tsv").is_file()
