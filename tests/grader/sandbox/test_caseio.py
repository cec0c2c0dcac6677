"""grader.sandbox.caseio: exact round trips of cases, strict reading of untrusted .npz files."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from grader.sandbox.caseio import (
    MANIFEST_KEY,
    BadArrayFile,
    CaseEncodingError,
    decode_case,
    encode_case,
    load_npz_strict,
    save_npz,
)


def roundtrip(case, tmp_path):
    path = save_npz(tmp_path / "case.npz", encode_case(case))
    return decode_case(load_npz_strict(path, kinds="biufcU"))


def test_roundtrip_keeps_every_type(tmp_path):
    x = np.arange(12.0).reshape(3, 4)
    case = {
        "x": x,
        "xf": np.asfortranarray(x),
        "scalar_array": np.array(3, dtype=np.int32),
        "mask": np.array([True, False]),
        "stride": 2,
        "lr": 0.5,
        "bias": False,
        "padding": "same",
        "pool_stride": None,
        "kernel_size": (3, 5),
        "layers": [("conv", 3, 1), {"kind": "pool", "size": 2}],
        "np_int": np.int64(7),
    }
    back = roundtrip(case, tmp_path)
    assert set(back) == set(case)
    for key in ("x", "xf", "scalar_array", "mask"):
        assert type(back[key]) is np.ndarray
        assert back[key].dtype == case[key].dtype and back[key].shape == case[key].shape
        np.testing.assert_array_equal(back[key], case[key])
    assert back["stride"] == 2 and type(back["stride"]) is int
    assert back["lr"] == 0.5 and type(back["lr"]) is float
    assert back["bias"] is False
    assert back["padding"] == "same" and back["pool_stride"] is None
    assert back["kernel_size"] == (3, 5) and type(back["kernel_size"]) is tuple
    assert back["layers"] == [("conv", 3, 1), {"kind": "pool", "size": 2}]
    assert back["np_int"] == 7 and type(back["np_int"]) is int


@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5),
    )
)
def test_roundtrip_any_numeric_array(arr, tmp_path_factory):
    back = roundtrip({"a": arr}, tmp_path_factory.mktemp("rt"))["a"]
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_decoded_arrays_are_fresh_copies(tmp_path):
    arrays = encode_case({"x": np.zeros(3)})
    first = decode_case(arrays)["x"]
    first[:] = 5
    assert decode_case(arrays)["x"].sum() == 0


@pytest.mark.parametrize("bad", [object(), {1: 2}, np.array([object()], dtype=object), {3}])
def test_unsupported_values_are_refused(bad):
    with pytest.raises(CaseEncodingError):
        encode_case({"v": bad})


def test_save_npz_is_atomic_and_readable(tmp_path):
    path = tmp_path / "out.npz"
    save_npz(path, {"a": np.ones(3)})
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(ValueError):
        save_npz(path, {"a": np.array([object()], dtype=object)})
    np.testing.assert_array_equal(load_npz_strict(path)["a"], np.ones(3))  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temp file left


def test_strict_loader_accepts_plain_numbers_only(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, f=np.ones((2, 2)), i=np.arange(3), b=np.array(True), u=np.uint8(3))
    got = load_npz_strict(path)
    assert all(type(v) is np.ndarray for v in got.values())
    assert got["b"].shape == () and got["u"].dtype == np.uint8


@pytest.mark.parametrize(
    "arrays, reason",
    [
        ({"o": np.array([1, "a"], dtype=object)}, "dtype object"),
        ({"s": np.array("text")}, "kind 'U'"),
        ({"c": np.array([1j])}, "kind 'c'"),
        ({"r": np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])}, "only plain numbers"),
    ],
)
def test_strict_loader_refuses(tmp_path, arrays, reason):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadArrayFile, match=reason.replace("(", r"\(")):
        load_npz_strict(path)


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_lying_header_is_caught_before_allocating(tmp_path):
    good = _npy_bytes(np.zeros(2))
    lie = good.replace(b"(2,)", b"(1000000000000,)".ljust(4)).replace(b"    \n", b"\n", 0)
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("out.npy", lie)
    with pytest.raises(BadArrayFile, match="header (says|declares the) shape"):
        load_npz_strict(path)


def test_zip_bomb_and_odd_members_are_refused(tmp_path):
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("out.npy", _npy_bytes(np.zeros(3_000_000)))  # 24 MB, compresses to ~KB
    assert os.path.getsize(bomb) < 100_000
    with pytest.raises(BadArrayFile, match="at most"):
        load_npz_strict(bomb, max_array_bytes=1_000_000)
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("payload.pkl", b"\x80\x04K\x01.")
    with pytest.raises(BadArrayFile, match="unexpected member"):
        load_npz_strict(odd)
    many = tmp_path / "many.npz"
    np.savez(many, **{f"a{i}": np.zeros(1) for i in range(300)})
    with pytest.raises(BadArrayFile, match="holds 300 arrays"):
        load_npz_strict(many)


def test_not_a_zip_and_too_large_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PASSED" + struct.pack("<I", 7))
    with pytest.raises(BadArrayFile, match="not an .npz"):
        load_npz_strict(junk)
    big = tmp_path / "big.npz"
    np.savez(big, a=np.zeros(1000))
    with pytest.raises(BadArrayFile, match="more than"):
        load_npz_strict(big, max_file_bytes=100)
    with pytest.raises(BadArrayFile, match="cannot read"):
        load_npz_strict(tmp_path / "missing.npz")


def test_decode_needs_a_manifest():
    with pytest.raises(BadArrayFile, match=MANIFEST_KEY):
        decode_case({"x": np.zeros(1)})
