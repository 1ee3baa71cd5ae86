"""Checks sliced entries of an ojs-ml archive against their source audio (see audio.ts).

stdin: JSON list of {member, source, start, duration}; argv: TAR path, "1" to check with sox too.
For each case: the member must be a valid RIFF WAV whose frames are exactly the frames of the
source that Lhotse selects (compute_num_samples, written out here the way lhotse/utils.py has
it), in WAV's representation (little-endian; unsigned 8-bit PCM).
stdout: {"checked": n, "wave": read by Python's wave module, "sox": read by sox}.
"""
import io
import json
import struct
import subprocess
import sys
import tarfile
import tempfile
import wave
from decimal import ROUND_HALF_UP, Decimal


def compute_num_samples(duration, sampling_rate):
    return int(Decimal(round(duration * sampling_rate, ndigits=8)).quantize(0, rounding=ROUND_HALF_UP))


def riff_chunks(data):
    assert data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE", "not RIFF WAVE"
    pos, chunks = 12, []
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks.append((cid, pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def fmt_of(data, chunks):
    cid, at, size = next(c for c in chunks if c[0] == b"fmt ")
    tag, ch, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", data[at : at + 16])
    sub = struct.unpack("<H", data[at + 24 : at + 26])[0] if tag == 0xFFFE else tag
    return dict(tag=tag, sub=sub, channels=ch, rate=rate, byte_rate=byte_rate, block=block, bits=bits, size=size)


def source_frames(path):
    """(fmt, frames in WAV representation) of a WAV or SPHERE source."""
    data = open(path, "rb").read()
    if data[:8] == b"NIST_1A\n":
        hdr = int(data[8:16])
        fields = {}
        for line in data[:hdr].decode("latin1").split("\n")[2:]:
            parts = line.strip().split(None, 2)
            if parts == ["end_head"]:
                break
            if len(parts) == 3:
                fields[parts[0]] = parts[2]
        width = int(fields.get("sample_n_bytes", "2"))
        ch = int(fields.get("channel_count", "1"))
        rate = int(fields["sample_rate"])
        coding = fields.get("sample_coding", "pcm")
        raw = bytearray(data[hdr:])
        raw = raw[: len(raw) - len(raw) % (width * ch)]
        if coding == "pcm" and width == 1:
            raw = bytearray(b ^ 0x80 for b in raw)
        elif coding == "pcm" and fields.get("sample_byte_format", "01").startswith("10"):
            for i in range(0, len(raw), width):
                raw[i : i + width] = raw[i : i + width][::-1]
        tag = {"pcm": 1, "ulaw": 7, "alaw": 6}[coding]
        return dict(tag=tag, sub=tag, channels=ch, rate=rate, block=width * ch, bits=width * 8), bytes(raw)
    chunks = riff_chunks(data)
    fmt = fmt_of(data, chunks)
    _, at, size = next(c for c in chunks if c[0] == b"data")
    frames = data[at : at + size]
    return fmt, frames[: len(frames) - len(frames) % fmt["block"]]


def check_entry(name, entry, fmt, want):
    chunks = riff_chunks(entry)
    riff_size = struct.unpack("<I", entry[4:8])[0]
    assert riff_size + 8 == len(entry), f"{name}: RIFF size {riff_size} + 8 != {len(entry)}"
    got_fmt = fmt_of(entry, chunks)
    for k in ("channels", "rate", "block", "bits", "sub"):
        assert got_fmt[k] == fmt[k], f"{name}: fmt {k} {got_fmt[k]} != source {fmt[k]}"
    assert got_fmt["byte_rate"] == fmt["rate"] * fmt["block"], f"{name}: byte rate"
    ids = [c[0] for c in chunks]
    assert ids[-1] == b"data", f"{name}: chunks {ids}"
    _, at, size = chunks[-1]
    assert size == len(want), f"{name}: data size {size}, want {len(want)}"
    assert at + size + (size & 1) == len(entry), f"{name}: bytes after the data chunk"
    assert entry[at : at + size] == want, f"{name}: frames differ from the source slice"
    if got_fmt["sub"] != 1:
        facts = [c for c in chunks if c[0] == b"fact"]
        assert facts, f"{name}: a non-PCM WAV needs a fact chunk"
        assert struct.unpack("<I", entry[facts[0][1] : facts[0][1] + 4])[0] == size // fmt["block"], f"{name}: fact count"
    read_by_wave = False
    if got_fmt["tag"] == 1:
        with wave.open(io.BytesIO(entry)) as w:
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (fmt["channels"], fmt["rate"], fmt["bits"] // 8), f"{name}: wave params"
            assert w.readframes(w.getnframes() + 1) == want, f"{name}: wave frames differ"
        read_by_wave = True
    return read_by_wave


def check_sox(name, entry, frames):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(entry)
        f.flush()
        r = subprocess.run(["soxi", "-s", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(["sox", "--i", "-s", f.name], capture_output=True, text=True)
        assert r.returncode == 0, f"{name}: sox cannot read it: {r.stderr}"
        assert int(r.stdout.strip()) == frames, f"{name}: sox counts {r.stdout.strip()} samples, want {frames}"


def main():
    cases = json.load(sys.stdin)
    use_sox = sys.argv[2] == "1"
    members = {}
    with tarfile.open(sys.argv[1], "r:*") as t:
        for m in t:
            members[m.name] = t.extractfile(m).read()
    sources = {}
    n_wave = n_sox = 0
    for c in cases:
        if c["source"] not in sources:
            sources[c["source"]] = source_frames(c["source"])
        fmt, frames = sources[c["source"]]
        total = len(frames) // fmt["block"]
        s0 = min(compute_num_samples(c["start"], fmt["rate"]), total)
        n = min(compute_num_samples(c["duration"], fmt["rate"]), total - s0)
        want = frames[s0 * fmt["block"] : (s0 + n) * fmt["block"]]
        assert c["member"] in members, f"no member {c['member']} (have {sorted(members)[:5]}...)"
        if check_entry(c["member"], members[c["member"]], fmt, want):
            n_wave += 1
        if use_sox:
            check_sox(c["member"], members[c["member"]], n)
            n_sox += 1
    print(json.dumps({"checked": len(cases), "wave": n_wave, "sox": n_sox}))


main()
