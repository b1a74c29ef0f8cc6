"""One name check for every path built from a name (issue #12): hub names, versions, manifest keys,
pipeline roles, tensor files, checksum entries."""

import pytest

from virtualcell.registry.names import UnsafeNameError, check_key, check_segment, inside

HOSTILE_SEGMENTS = ["", ".", "..", "../x", "/abs", "a/b", "a\\b", "..\\x", "nul\0", "new\nline", "tab\tname",
                    "\u2028", " padded", "x" * 256, "é" * 128, "zero\u200bwidth"]
HOSTILE_KEYS = ["/abs", "../x", "a/../../b", "a/./b", "a//b", "a/", "C:/x", "c:\\x", "a\\..\\b", "x\0", "a/" + "y" * 256,
                "z/" * 600 + "z"]


@pytest.mark.parametrize("name", HOSTILE_SEGMENTS, ids=repr)
def test_hostile_segments_are_refused(name):
    with pytest.raises(UnsafeNameError, match="Unsafe"):
        check_segment(name)


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:30])
def test_hostile_keys_are_refused(key):
    with pytest.raises(UnsafeNameError, match="Unsafe"):
        check_key(key)


@pytest.mark.parametrize("good", ["config.json", "weights.safetensors", "1.0.0+build-7", "encoder", "ünïcode", "a b"])
def test_ordinary_names_pass(good):
    assert check_segment(good) == good and check_key(f"sub/{good}") == f"sub/{good}"


def test_non_strings_are_refused():
    for value in (None, 3, b"bytes", ["a"]):
        with pytest.raises(UnsafeNameError, match="must be a string"):
            check_segment(value)


def test_inside_refuses_a_path_through_a_symlink(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeNameError, match="resolves outside"):
        inside(tmp_path / "root", "link/escape.txt")
    assert inside(tmp_path / "root", "sub/file.txt") == (tmp_path / "root" / "sub" / "file.txt").resolve()
