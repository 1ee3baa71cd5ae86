"""Reads a Shar directory the way Lhotse's Shar reader does (lhotse/shar/readers/lazy.py and
tar.py, ../shared/reference/lhotse.md section 4) and checks what it finds.

stdin: {"dir": ..., "originals": {cut_id: {"source": path, "start": s, "duration": d}}}.
- the directory holds cuts.NNNNNN.jsonl.gz and recording.NNNNNN.tar for N = 0, 1, ... and nothing else;
- each tar, read as a stream ("r|*"), holds members in pairs: data then metadata, in cut order;
  str(data_path.parent / data_path.stem) == cut id (Lhotse's assertion); `.nodata`/`.nometa`
  placeholders are empty;
- the metadata is a one-line Recording whose only source is {"type": "shar", "source": ""};
  the cut line carries the same recording;
- a sliced cut has start 0, duration and num_samples (compute_num_samples) of the cut, and its
  WAV holds exactly the frames Lhotse selects from the original recording.
stdout: {"shards": n, "cuts": n, "sliced": n, "whole": n, "placeholders": n}.
"""
import gzip
import io
import json
import os
import re
import sys
import tarfile
import wave
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path


def compute_num_samples(duration, sampling_rate):
    return int(Decimal(round(duration * sampling_rate, ndigits=8)).quantize(0, rounding=ROUND_HALF_UP))


def pairs(tar_path):
    with tarfile.open(tar_path, mode="r|*") as tar:
        result = []
        for info in tar:
            path = Path(info.path)
            data = None if path.suffix in (".nodata", ".nometa") else tar.extractfile(info).read()
            if path.suffix in (".nodata", ".nometa"):
                assert info.size == 0, f"{path}: a placeholder must be empty"
            result.append((data, path))
            if len(result) == 2:
                yield tuple(result)
                result = []
        assert not result, f"{tar_path}: uneven number of members"


def original_frames(c):
    with wave.open(c["source"]) as w:
        sr, block = w.getframerate(), w.getnchannels() * w.getsampwidth()
        frames = w.readframes(w.getnframes())
    s0 = compute_num_samples(c["start"], sr)
    n = compute_num_samples(c["duration"], sr)
    return frames[s0 * block : (s0 + n) * block]


def main():
    spec = json.load(sys.stdin)
    d = spec["dir"]
    names = sorted(os.listdir(d))
    k = len(names) // 2
    assert names == sorted([f"cuts.{i:06d}.jsonl.gz" for i in range(k)] + [f"recording.{i:06d}.tar" for i in range(k)]), names
    stats = dict(shards=k, cuts=0, sliced=0, whole=0, placeholders=0)
    for i in range(k):
        with gzip.open(os.path.join(d, f"cuts.{i:06d}.jsonl.gz"), "rt", encoding="utf-8") as f:
            cuts = [json.loads(line) for line in f]
        got = list(pairs(os.path.join(d, f"recording.{i:06d}.tar")))
        assert len(got) == len(cuts), f"shard {i}: {len(cuts)} cuts, {len(got)} pairs"
        for cut, ((data, data_path), (meta, meta_path)) in zip(cuts, got):
            stats["cuts"] += 1
            assert str(data_path.parent / data_path.stem) == cut["id"], f"Mismatched IDs: cut ID is '{cut['id']}' but found data with name '{data_path}'"
            assert str(meta_path.parent / meta_path.stem) == cut["id"], f"metadata {meta_path} for cut {cut['id']}"
            if data is None:
                assert meta_path.suffix == ".nometa" and meta is None
                assert "recording" not in cut or cut["type"] == "PaddingCut", f"{cut['id']}: a placeholder pair, yet the cut has a recording"
                stats["placeholders"] += 1
                continue
            assert meta_path.suffix == ".json", meta_path
            text = meta.decode("utf-8")
            assert text.endswith("\n") and text.count("\n") == 1, f"{meta_path}: not one line"
            assert re.fullmatch(r"[\x20-\x7e\n]*", text), f"{meta_path}: json.dumps escapes non-ASCII"
            rec = json.loads(text)
            assert rec == cut["recording"], f"{cut['id']}: the cut's recording differs from {meta_path}"
            assert [s["type"] for s in rec["sources"]] == ["shar"] and rec["sources"][0]["source"] == "", rec["sources"]
            assert rec["sources"][0]["channels"] == rec["channel_ids"]
            orig = spec["originals"][cut["id"]]
            if data != open(orig["source"], "rb").read():
                assert cut["start"] == 0, f"{cut['id']}: start {cut['start']}"
                assert rec["duration"] == cut["duration"] == orig["duration"]
                assert rec["num_samples"] == compute_num_samples(cut["duration"], rec["sampling_rate"])
                assert "transforms" not in rec or all(t["name"] == "Volume" for t in rec["transforms"])
                with wave.open(io.BytesIO(data)) as w:
                    assert w.getframerate() == rec["sampling_rate"]
                    assert w.getnchannels() == len(rec["channel_ids"])
                    assert w.readframes(w.getnframes()) == original_frames(orig), f"{cut['id']}: samples differ"
                stats["sliced"] += 1
            else:
                assert cut["start"] == orig["start"], f"{cut['id']}: whole audio keeps the cut's start"
                stats["whole"] += 1
    print(json.dumps(stats))


main()
