"""Saving never clobbers: special files are refused (or, for the CLI, written through),
symlinks are written through, modes and hard links are kept, long names save, and a
full disk, a read-only directory or concurrent writers leave the old file intact or
the new one complete, never half."""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fusednn
from fusednn import cli, files, keras


@pytest.fixture
def model():
    fusednn.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(4, input_shape=(3,)), keras.layers.Dense(1)])
    m.compile(optimizer="adam", loss="mse")
    return m


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("how", ["save", "save_weights", "checkpoint", "onnx"])
def test_fifo_and_directory_targets_are_refused(model, tmp_path, how):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    link = tmp_path / "link_to_fifo"
    link.symlink_to(fifo)
    for target in (fifo, tmp_path / "dir", link, str(tmp_path / "newdir") + "/"):
        with pytest.raises(files.NotARegularFileError, match="directory|FIFO"):
            if how == "save":
                model.save(target)
            elif how == "save_weights":
                model.save_weights(target)
            elif how == "onnx":
                files.write_atomically(target, lambda f: f.write(b"x"))
            else:
                cb = keras.callbacks.ModelCheckpoint(str(target), monitor="loss")
                model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[cb])
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.path.islink(link) and (tmp_path / "dir").is_dir()
    assert sorted(os.listdir(tmp_path)) == ["dir", "link_to_fifo", "pipe"]  # no temporary left behind


def test_symlink_is_written_through(model, tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "m.npz"
    model.save(real)
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    model.set_weights([w + 1 for w in model.get_weights()])
    model.save(link)
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert same_weights(fusednn.load_model(real), model)
    assert sorted(os.listdir(tmp_path / "real")) == ["m.npz"] and sorted(os.listdir(tmp_path)) == ["link.npz", "real"]
    dangling = tmp_path / "dangling.npz"  # a link to a file not yet there creates that file
    dangling.symlink_to(tmp_path / "real" / "new.npz")
    model.save(dangling)
    assert os.path.islink(dangling) and same_weights(fusednn.load_model(tmp_path / "real" / "new.npz"), model)


def test_permission_bits_and_hard_links_are_kept(model, tmp_path):
    path = tmp_path / "secret.npz"
    model.save(path)
    os.chmod(path, 0o600)
    other = tmp_path / "other_link.npz"
    os.link(path, other)
    inode = os.stat(path).st_ino
    model.set_weights([w * 2 for w in model.get_weights()])
    model.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_ino == inode and os.stat(path).st_nlink == 2
    assert same_weights(fusednn.load_model(other), model)
    os.unlink(other)  # a single link: replaced by rename, mode still kept
    os.chmod(path, 0o640)
    model.save_weights(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["secret.npz"]


def test_names_at_the_filesystem_limit_save(model, tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    path = tmp_path / ("m" * (limit - 4) + ".npz")
    model.save(path)
    model.save(path)  # and over an existing one
    assert same_weights(fusednn.load_model(path), model)


def test_cli_out_writes_through_fifos_and_devices_and_rejects_directories(model, tmp_path, capsys):
    """The command line writes its CSV into an existing FIFO or /dev/null (a shell's `>`),
    and rejects a directory or a trailing slash at argument parsing (exit 2)."""
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,c,y\n" + "".join(f"{i},{i + 1},{i % 3},{i % 2}\n" for i in range(40)))
    model_path = tmp_path / "m.npz"
    assert cli.main(["train", str(csv), "--target", "y", "--epochs", "1", "--verbose", "0", "--out",
                     str(model_path)]) == 0
    fifo = tmp_path / "preds"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert cli.main(["predict", str(model_path), str(csv), "--out", str(fifo)]) == 0
    reader.join(10)
    assert got and got[0].count(b"\n") == 41 and stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert cli.main(["predict", str(model_path), str(csv), "--out", os.devnull]) == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    # /dev/stdout on a pipe: /proc's link names no real path, the pipe is written through
    r = subprocess.run([sys.executable, "-m", "fusednn", "predict", str(model_path), str(csv), "--out",
                        "/dev/stdout"], capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout.count(b"\n") == 41 and b"wrote" not in r.stdout, r.stderr[-500:]
    capsys.readouterr()
    for bad in (str(tmp_path) + "/", str(tmp_path), str(tmp_path / "nodir") + "/"):
        for argv in (["predict", str(model_path), str(csv), "--out", bad],
                     ["train", str(csv), "--target", "y", "--out", bad]):
            with pytest.raises(SystemExit) as e:
                cli.main(argv)
            assert e.value.code == 2
            err = capsys.readouterr().err
            assert "--out" in err and "directory" in err and "Traceback" not in err


FULL_DISK = textwrap.dedent("""
    import os, resource, signal, sys
    from fusednn.files import write_atomically
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    try:
        write_atomically(sys.argv[1], lambda f: f.write(b"N" * (1 << 20)))
    except OSError as e:
        print("errno", e.errno)
    """)


@pytest.mark.parametrize("hard_link", [False, True])
def test_disk_full_leaves_the_old_file_intact(tmp_path, hard_link):
    """A file-size limit (RLIMIT_FSIZE) makes the write fail midway like a full disk."""
    path = tmp_path / "m.npz"
    path.write_bytes(b"O" * 4096)
    if hard_link:
        os.link(path, tmp_path / "link")
    r = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), str(64 << 10)], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip() == f"errno {errno.EFBIG}", r.stderr
    assert path.read_bytes() == b"O" * 4096
    assert sorted(os.listdir(tmp_path)) == (["link", "m.npz"] if hard_link else ["m.npz"])


def test_enospc_while_writing_leaves_the_old_file_intact(model, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space"):
        model.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


def test_read_only_directory_is_a_clear_error(model, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    real_open = os.open

    def read_only(p, flags, *args, **kwargs):  # root ignores chmod, so simulate EROFS for new files
        if flags & os.O_CREAT and os.path.dirname(os.fspath(p)) == str(tmp_path):
            raise OSError(errno.EROFS, "Read-only file system", p)
        return real_open(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OSError, match=f"cannot save .*m.npz: cannot create a file in {tmp_path}"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    if os.geteuid() != 0:
        os.chmod(tmp_path, 0o500)
        try:
            with pytest.raises(PermissionError, match="cannot create a file"):
                model.save(path)
        finally:
            os.chmod(tmp_path, 0o700)
        assert path.read_bytes() == before


@pytest.mark.parametrize("hard_link", [False, True])
def test_concurrent_writers_never_leave_half_a_file(tmp_path, hard_link):
    """Four writers save 256 KiB files of their own byte to one path, 15 times each,
    while (for the rename path) a reader checks every version it sees is complete."""
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * (256 << 10))
    if hard_link:
        os.link(path, tmp_path / "link")
    size, errors, done = 256 << 10, [], threading.Event()

    def writer(k):
        try:
            for _ in range(15):
                files.write_atomically(path, lambda f: f.write(bytes([k]) * size))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader():
        while not done.is_set():
            data = path.read_bytes()
            if len(data) != size or data.count(data[:1]) != size:
                errors.append(f"saw a half-written file: {len(data)} bytes, {len(set(data))} distinct")
                return

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(1, 5)]
    check = threading.Thread(target=reader)
    if not hard_link:  # the in-place copy that keeps hard links is serialised, not atomic for readers
        check.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    if not hard_link:
        check.join(10)
    assert not errors, errors[:3]
    data = path.read_bytes()
    assert len(data) == size and data.count(data[:1]) == size and data[0] in (1, 2, 3, 4)
    assert sorted(os.listdir(tmp_path)) == (["link", "m.bin"] if hard_link else ["m.bin"])
    if hard_link:
        assert (tmp_path / "link").read_bytes() == data
