"""A generator of malformed model files: every one must end in ValueError, and none may
make the reader allocate much more than the file's size (measured with tracemalloc,
which sees NumPy's allocations). Kinds: truncation at many offsets, bit flips,
overlapping zip members, lying shapes, empty weights, huge declared shapes, wrong
dtypes, wrong-but-valid JSON, and paths that are not regular files."""
from __future__ import annotations

import binascii
import io
import json
import os
import struct
import threading
import tracemalloc
import zipfile
from collections import Counter

import numpy as np
import pytest

import fusednn
from fusednn import keras, saving

#: a model file may cost this multiple of its size (+ a constant) to reject
ALLOWED = lambda size: 4 * size + (2 << 20)  # noqa: E731


def valid_model(tmp_path):
    fusednn.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(6,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 6)), np.ones((8, 2)), epochs=1, verbose=0)
    path = tmp_path / "ok.npz"
    model.save(path)
    return model, path.read_bytes()


def pack(doc, arrays) -> bytes:
    f = io.BytesIO()
    np.savez(f, **{saving.CONFIG_KEY: np.frombuffer(json.dumps(doc).encode(), np.uint8)}, **arrays)
    return f.getvalue()


def npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a, allow_pickle=True)
    return f.getvalue()


def _local(name: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, binascii.crc32(payload), len(payload),
                       len(payload), len(name), 0) + name + payload


def overlapping_zip(doc, order, n_floats):
    """A zip whose members overlap ("quoted overlap"): each member's stored data runs
    over every later member's local header and data, so k members of a file of S bytes
    read as ~k*S/2 bytes; each is still a valid stored member with a correct CRC and a
    valid .npy header (names of 14 bytes keep every size a whole number of float32s)."""
    names = [n.encode() + b".npy" for n in order]
    assert all((30 + len(n)) % 4 == 0 for n in names)
    payloads = [npy(np.zeros(n_floats, np.float32))]
    header_lens = []
    record = _local(names[-1], payloads[0])
    for name in reversed(names[:-1]):
        f = io.BytesIO()
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (len(record) // 4,)})
        payloads.insert(0, f.getvalue() + record)
        header_lens.insert(0, len(f.getvalue()))
        record = _local(name, payloads[0])
    shapes = {n: [(len(p) - h) // 4] for n, p, h in zip(order, payloads, header_lens)}
    shapes[order[-1]] = [n_floats]
    config = npy(np.frombuffer(json.dumps(dict(doc, arrays=shapes)).encode(), np.uint8))
    cfg_name = (saving.CONFIG_KEY + ".npy").encode()
    body = _local(cfg_name, config)
    members, offset = [(cfg_name, config, 0)], len(body)
    for i, name in enumerate(names):
        members.append((name, payloads[i], offset))
        if i < len(header_lens):
            offset += 30 + len(name) + header_lens[i]
    body += record
    central = b"".join(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, binascii.crc32(p),
                                   len(p), len(p), len(n), 0, 0, 0, 0, 0, off) + n for n, p, off in members)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0)
    return body + central + end


def cases(tmp_path):
    """(kind, bytes or path) of every malformed file."""
    model, good = valid_model(tmp_path)
    doc, arrays = saving.read_file(tmp_path / "ok.npz")
    out = []
    for k in sorted(set(np.linspace(0, len(good) - 1, 120).astype(int)) | set(range(0, 40, 3))):
        out.append(("truncated", good[:k]))
    rng = np.random.default_rng(0)
    for pos, bit in zip(rng.integers(0, len(good), 300), rng.integers(0, 8, 300)):
        flipped = bytearray(good)
        flipped[pos] ^= 1 << bit
        out.append(("bit flip", bytes(flipped)))

    def edit(kind, change_doc=None, change_arrays=None):
        d, a = json.loads(json.dumps(doc)), dict(arrays)
        if change_doc:
            change_doc(d)
        if change_arrays:
            change_arrays(d, a)
        out.append((kind, pack(d, a)))

    layers = lambda d: d["model"]["config"]["layers"]  # noqa: E731
    # lying shapes: the architecture declares more (or other) than the arrays hold
    edit("lying shapes", lambda d: layers(d)[0]["config"].update(units=17))
    edit("lying shapes", lambda d: layers(d)[1]["config"].update(use_bias=False))
    edit("lying shapes", lambda d: d["model"]["config"].update(input_shape=[None, 7]))
    edit("lying shapes", lambda d: d["arrays"].update({"layers.0.0": [6, 17]}))
    edit("lying shapes", lambda d: d["weights"][0].reverse())
    edit("lying shapes", lambda d: d["weights"].__setitem__(1, ["layers.0.0", "layers.0.1"]))
    edit("lying shapes", lambda d: layers(d).insert(1, {"class_name": "Dense", "config": {"units": 3}}))
    edit("lying shapes", None, lambda d, a: a.update({"layers.0.0": np.zeros((16, 6), np.float32)}))
    # empty weights: a freshly initialised model must not pass for the saved one
    edit("empty weights", lambda d: d.update(weights=[[], []]))
    edit("empty weights", lambda d: d.update(weights=[["layers.0.0", "layers.0.1"], []]))
    edit("empty weights", lambda d: d.update(weights=[[], []], arrays={}), lambda d, a: a.clear())
    edit("empty weights", lambda d: d.update(weights=[]))
    # huge declared shapes: must be refused before anything is allocated for them
    for units, inputs in ((20_000, 20_000), (10**6, 10**6), (2**31, 3), (10**15, 10**15)):
        edit("huge shapes", lambda d: (layers(d)[0]["config"].update(units=units),
                                       d["model"]["config"].update(input_shape=[None, inputs]),
                                       d.update(weights=[[], []])))
    edit("huge shapes", lambda d: d["arrays"].update({"layers.0.0": [10**12, 10**12]}))
    edit("huge shapes", lambda d: d["arrays"].update({"layers.0.0": [2**62]}))
    # wrong dtypes
    for dtype in (np.float64, np.int32, np.float16, np.uint8, ">f4", "complex64"):
        edit("wrong dtype", None, lambda d, a: a.update({"layers.0.0": a["layers.0.0"].astype(dtype)}))
    edit("wrong dtype", None, lambda d, a: a.update({"layers.0.0": np.asfortranarray(np.zeros((6, 16), "<f4"))}))
    edit("wrong dtype", None, lambda d, a: a.update({"layers.0.0": np.array([object()] * 96).reshape(6, 16)}))
    # NaN-free but wrong JSON
    wrong_json = [
        lambda d: d.pop("format"), lambda d: d.update(format_version="1"), lambda d: d.update(format_version=99),
        lambda d: d.update(format_version=True), lambda d: d.update(model=[]),
        lambda d: d["model"].update(class_name="Functional"), lambda d: d["model"].update(config=None),
        lambda d: d["model"]["config"].update(layers={}), lambda d: layers(d).append("Dense"),
        lambda d: layers(d)[0].update(class_name="Conv2D"), lambda d: layers(d)[0]["config"].update(units=-4),
        lambda d: layers(d)[0]["config"].update(units="16"), lambda d: layers(d)[0]["config"].update(units=True),
        lambda d: layers(d)[0]["config"].update(units=16.5), lambda d: layers(d)[0]["config"].update(activation="x"),
        lambda d: layers(d)[0]["config"].update(bogus=1), lambda d: layers(d)[0].update(config=[]),
        lambda d: d["model"]["config"].update(input_shape=[None, -5]),
        lambda d: d["model"]["config"].update(input_shape=[None, 1.5]),
        lambda d: d["model"]["config"].update(input_shape=[None, True]),
        lambda d: d["model"]["config"].update(input_shape=[None, 0]),
        lambda d: d["model"]["config"].update(input_shape="x"),
        lambda d: d.update(weights={"a": 1}), lambda d: d.update(weights=[[1, 2], [3]]),
        lambda d: d.update(weights=[["nope"], []]), lambda d: d.update(arrays=[]),
        lambda d: d.update(arrays={"layers.0.0": [6, -16]}), lambda d: d.update(arrays={"layers.0.0": "6x16"}),
        lambda d: d["compile"].update(optimizer={"class_name": "Nope", "config": {}}),
        lambda d: d["compile"].update(loss=7), lambda d: d["compile"]["optimizer"]["config"].update(beta_1="x"),
        lambda d: d["optimizer_state"].update(arrays=["optimizer.0"]),
        lambda d: d["optimizer_state"].update(arrays=["layers.0.0"] * 8),
        lambda d: d["optimizer_state"].update(iterations="many"),
    ]
    for change in wrong_json:
        edit("wrong JSON", change)
    for text in (b"[]", b"{}", b'"fusednn"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b"{" * 5):
        out.append(("wrong JSON", pack_raw_config(text, arrays)))
    # overlapping members ("quoted overlap"): 20 members over one 512 KiB array
    out.append(("overlapping members", overlapping_zip(doc, [f"layers.{i}.{j}" for i in range(10) for j in (0, 1)],
                                                       1 << 17)))
    # paths that are not model files at all
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "a_directory").mkdir()
    for path in ("/dev/zero", fifo, tmp_path / "a_directory"):
        out.append(("not a regular file", path))
    return model, out


def pack_raw_config(text: bytes, arrays) -> bytes:
    f = io.BytesIO()
    np.savez(f, **{saving.CONFIG_KEY: np.frombuffer(text, np.uint8)}, **arrays)
    return f.getvalue()


def test_every_malformed_file_is_a_value_error_without_large_allocation(tmp_path):
    model, all_cases = cases(tmp_path)
    x = np.linspace(-1, 1, 36, dtype=np.float32).reshape(6, 6)
    expected = model.predict(x, verbose=0)
    tried, outcome, failures = Counter(), Counter(), []
    target = tmp_path / "bad.npz"
    tracemalloc.start()
    try:
        for kind, content in all_cases:
            tried[kind] += 1
            if isinstance(content, bytes):
                target.write_bytes(content)
                path, size = target, len(content)
            else:
                path, size = content, 0
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            result = []
            # a thread, so that a read that blocks (a FIFO) fails the test instead of hanging it
            worker = threading.Thread(target=lambda: result.append(_load(path)), daemon=True)
            worker.start()
            worker.join(20)
            peak = tracemalloc.get_traced_memory()[1] - base
            if not result:
                failures.append(f"{kind}: blocked")
                continue
            status = result[0]
            if peak > ALLOWED(size):
                failures.append(f"{kind}: {peak} bytes allocated for a {size}-byte file ({status})")
            if status == "ValueError":
                outcome["ValueError"] += 1
            elif kind == "bit flip" and isinstance(status, fusednn.Sequential) and \
                    np.array_equal(status.predict(x, verbose=0), expected):
                outcome["bit flip in an unused field: loads the same model"] += 1
            else:
                failures.append(f"{kind}: {status!r}")
    finally:
        tracemalloc.stop()
    print(f"\nmalformed model files tried: {dict(tried)}, total {sum(tried.values())}; outcomes: {dict(outcome)}")
    assert not failures, failures[:10]
    assert sum(tried.values()) >= 500 and sum(outcome.values()) == sum(tried.values())
    assert outcome["ValueError"] >= sum(tried.values()) - tried["bit flip"] // 4


def _load(path):
    try:
        return fusednn.load_model(path)
    except ValueError:
        return "ValueError"
    except BaseException as e:  # noqa: BLE001 - reported as a failure
        return f"{type(e).__name__}: {e}"[:300]


def test_overlapping_members_are_rejected_by_name(tmp_path):
    _, good = valid_model(tmp_path)
    doc, _ = saving.read_file(tmp_path / "ok.npz")
    data = overlapping_zip(doc, ["layers.0.0", "layers.0.1", "layers.1.0"], 1000)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # the zip module itself reads every member
        assert all(len(zf.read(i)) > 0 for i in zf.infolist())
    path = tmp_path / "overlap.npz"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="zip members .* overlap"):
        fusednn.load_model(path)


def test_lying_declaration_is_refused_before_building(tmp_path, monkeypatch):
    """Dense(20000) on 20000 inputs with empty weights: refused before any layer builds."""
    _, good = valid_model(tmp_path)
    doc, arrays = saving.read_file(tmp_path / "ok.npz")
    doc["model"]["config"]["layers"][0]["config"]["units"] = 20_000
    doc["model"]["config"]["input_shape"] = [None, 20_000]
    doc["weights"] = [[], []]
    path = tmp_path / "liar.npz"
    path.write_bytes(pack(doc, arrays))
    built = []
    monkeypatch.setattr(keras.layers.Dense, "build", lambda self, d: built.append(d))
    with pytest.raises(ValueError, match="weights of shapes"):
        fusednn.load_model(path)
    assert built == []
    weights_only = keras.Sequential([keras.layers.Dense(20_000), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="do not fit"):
        weights_only.load_weights(path)
    assert built == []
