#!/usr/bin/env python3
"""A training loop's data step against `ojs-ml serve`, with the standard library only.

One POST per batch; the answer is a TAR stream read member by member as it arrives
(tarfile mode "r|"), so nothing waits for the whole batch and nothing touches the disk.

    python3 train_loop.py --endpoint http://127.0.0.1:8080 --bucket data \
        --batch a.wav,b.wav --batch c.wav,d.wav

Prints one line per sample: batch number, name, size and sha256 (stand-ins for decoding and
feeding a model). Exits non-zero with the server's error if a batch fails, and also if a
stream is cut off mid-way: tarfile then raises instead of returning a shorter batch.
"""
import argparse
import hashlib
import json
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request


def fetch_batch(endpoint, bucket, names, token=None, cont_on_err=True):
    """Yields (name, bytes) for each entry of one batch, in request order."""
    body = json.dumps({
        "in": [{"objname": n} for n in names],
        "strm": True,          # stream the archive as it is built
        "coer": cont_on_err,   # a missing item becomes an empty __404__/<name> entry
        "mime": ".tar",
    }).encode()
    url = f"{endpoint.rstrip('/')}/v1/ml/moss/{urllib.parse.quote(bucket)}?provider=file"
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        resp = urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:
        err = json.loads(e.read() or b"{}").get("error", {})
        raise SystemExit(f"batch refused: HTTP {e.code} {err.get('code')}: {err.get('message')}")
    with resp, tarfile.open(fileobj=resp, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                yield member.name, tar.extractfile(member).read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True, help="a --root name of the server")
    ap.add_argument("--batch", action="append", required=True, help="comma-separated names; repeat for more batches")
    ap.add_argument("--token")
    ap.add_argument("--strict", action="store_true", help="fail the batch on a missing item instead of an empty __404__/ entry")
    args = ap.parse_args()
    for step, batch in enumerate(args.batch):
        for name, data in fetch_batch(args.endpoint, args.bucket, batch.split(","), args.token, cont_on_err=not args.strict):
            print(f"{step}\t{name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
