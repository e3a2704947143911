#!/usr/bin/python3
"""A safetensors reader and writer in plain numpy, to show icd checkpoints are ordinary safetensors files.

  /usr/bin/python3 tools/safetensors_numpy.py show FILE         list tensors and metadata of any file
  /usr/bin/python3 tools/safetensors_numpy.py write-fixture     write tests/fixtures/checkpoint/from_python.safetensors
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}


def read(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
    return tensors, meta


def write(path, tensors, meta):
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {v: k for k, v in DTYPES.items()}[a.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        tensors, meta = read(sys.argv[2])
        print("metadata:", meta)
        for name, a in tensors.items():
            print(f"{name}: {a.dtype} {list(a.shape)} sum={a.astype(np.float64).sum():.17g}")
    elif len(sys.argv) == 2 and sys.argv[1] == "write-fixture":
        out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "checkpoint", "from_python.safetensors")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        write(out, {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 8,
                    "bn.running_mean": np.array([0.1, -0.2, 1e-300], dtype=np.float64),
                    "index": np.array([[1, -2], [3, 1 << 40]], dtype=np.int64)},
              {"written_by": "tools/safetensors_numpy.py"})
        print("wrote", os.path.normpath(out))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
