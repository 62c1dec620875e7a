import pytest
import torch

from store.packs import PACK_FORMAT, checksum, read_pack, sweep_temp_files, temp_path, tensor_bytes, write_pack


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_pack_round_trip_is_exact_and_slices_point_at_each_segment(tmp_path, dtype):
    kv = torch.randn(5, 3, 2, 2, 1, 8).to(dtype)
    path = tmp_path / "p.safetensors"
    slices = write_pack(path, kv, [7, 7, 7, 7, 7], {"fingerprint": "f" * 64, "compressor": "voco", "k": 1})
    pack = read_pack(path)
    assert pack.kv.dtype == dtype and torch.equal(pack.kv, kv)
    assert pack.source_positions.tolist() == [7] * 5
    assert pack.metadata["format"] == PACK_FORMAT and pack.metadata["k"] == "1"
    raw = path.read_bytes()
    for t, sl in enumerate(slices):
        assert (sl.offset, sl.nbytes) == pack.slice_of(t)
        assert raw[sl.offset:sl.offset + sl.nbytes] == bytes(tensor_bytes(kv[t]))
        assert checksum(raw[sl.offset:sl.offset + sl.nbytes]) == sl.checksum
    assert list(tmp_path.iterdir()) == [path]  # no temp file left


def test_read_pack_copies_and_never_writes_the_file(tmp_path):
    path = tmp_path / "p.safetensors"
    write_pack(path, torch.zeros(2, 1, 2, 1, 1, 4), [3, 3], {})
    before = path.read_bytes()
    pack = read_pack(path)
    pack.kv.add_(1)  # a private copy: the file stays as it was
    assert path.read_bytes() == before
    path.write_bytes(before[:100])  # and the copy outlives what happens to the file
    assert float(pack.kv.sum()) == pack.kv.numel()


def test_truncated_or_foreign_files_fail_loudly(tmp_path):
    path = tmp_path / "p.safetensors"
    write_pack(path, torch.randn(4, 1, 2, 1, 1, 16), [1] * 4, {})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_pack(path)
    other = tmp_path / "o.safetensors"
    other.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a cache pack"):
        read_pack(other)


def test_write_pack_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="T, layers, 2"):
        write_pack(tmp_path / "x", torch.zeros(2, 2, 2), [0, 0], {})
    with pytest.raises(ValueError, match="source positions"):
        write_pack(tmp_path / "x", torch.zeros(2, 1, 2, 1, 1, 4), [0], {})


def test_sweep_removes_only_temp_files(tmp_path):
    keep = tmp_path / "a" / "pack.safetensors"
    keep.parent.mkdir()
    keep.write_bytes(b"x")
    stale = temp_path(keep)
    stale.write_bytes(b"half")
    assert sweep_temp_files(tmp_path) == [stale]
    assert keep.exists() and not stale.exists()
