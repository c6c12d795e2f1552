"""Image paths in ``modelkit run`` prompts, found, unescaped, checked and read as
``ollama run`` does (``cmd/interactive.go``: extractFileNames / extractFileData)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from fixtures.tiny_projector import tiny_image_bytes
from modelkit.cli.image_paths import (
    MAX_IMAGE_BYTES,
    ImageFileError,
    encode_image,
    extract_images,
    image_path_candidates,
    names_image_path,
    read_image,
    sniff_content_type,
    unescape_path,
)

PNG = tiny_image_bytes("PNG")


@pytest.fixture
def pics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a few images (and a fake one)."""
    (tmp_path / "cat.png").write_bytes(PNG)
    (tmp_path / "dog.JPG").write_bytes(tiny_image_bytes("JPEG"))
    (tmp_path / "bird.webp").write_bytes(tiny_image_bytes("WEBP"))
    (tmp_path / "my pic (1).png").write_bytes(PNG)
    (tmp_path / "notes.png").write_text("not an image at all\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_relative_path(pics: Path) -> None:
    assert extract_images("what is in ./cat.png ?") == ("what is in  ?", [Path("cat.png")])


def test_absolute_path(pics: Path) -> None:
    text, paths = extract_images(f"describe {pics}/cat.png please")
    assert text == "describe  please"
    assert paths == [pics / "cat.png"]


def test_escaped_spaces_and_parentheses(pics: Path) -> None:
    text, paths = extract_images(f"look {pics}/my\\ pic\\ \\(1\\).png")
    assert text == "look"
    assert paths == [pics / "my pic (1).png"]


def test_single_quoted_path(pics: Path) -> None:
    text, paths = extract_images(f"look '{pics}/my pic (1).png' now")
    assert text == "look  now"  # the quotes go with the path
    assert paths == [pics / "my pic (1).png"]


def test_missing_file_stays_in_the_text(pics: Path) -> None:
    assert extract_images("see ./nope.png and ./cat.png") == (
        "see ./nope.png and",
        [Path("cat.png")],
    )
    assert extract_images("see ./nope.png") == ("see ./nope.png", [])


def test_two_images_and_a_repeat(pics: Path) -> None:
    text, paths = extract_images("compare ./cat.png with ./dog.JPG, then ./cat.png again")
    assert text == "compare  with , then  again"
    assert paths == [Path("cat.png"), Path("dog.JPG"), Path("cat.png")]


@pytest.mark.parametrize("name", ["x.PNG", "x.Jpeg", "x.jpg", "x.WebP"])
def test_extensions_are_case_insensitive(name: str) -> None:
    assert image_path_candidates(f"see ./{name} now") == [f"./{name}"]


@pytest.mark.parametrize("text", ["./x.gif", "./x.pngx", "x.png", "./x.svg", "./x.png2"])
def test_what_is_no_image_path(text: str) -> None:
    assert image_path_candidates(text) == []


def test_path_as_first_word_is_a_prompt(pics: Path) -> None:
    assert names_image_path(f"{pics}/cat.png what is this?")
    assert names_image_path("/tmp/my\\ pic.png what?")  # no existence check here
    assert not names_image_path("/show info")
    assert not names_image_path("/clear")
    assert extract_images(f"{pics}/cat.png what is this?") == ("what is this?", [pics / "cat.png"])


def test_unescape_undoes_shell_escapes_once() -> None:
    assert unescape_path(r"/a\ b\(c\)\[d\]\{e\}\$f\&g\;h\'i\*j\?k\~l.png") == (
        "/a b(c)[d]{e}$f&g;h'i*j?k~l.png"
    )
    assert unescape_path(r"/a\\\ b.png") == "/a\\ b.png"  # \\ then \<space>, one pass
    assert unescape_path(r"/a\xb.png") == r"/a\xb.png"  # not an escape


def test_read_image_accepts_jpeg_png_webp_by_content(pics: Path) -> None:
    for name in ("cat.png", "dog.JPG", "bird.webp"):
        assert read_image(pics / name) == (pics / name).read_bytes()
    # The name does not matter, the bytes do: a PNG called .jpg is fine.
    (pics / "really-png.jpg").write_bytes(PNG)
    assert read_image(pics / "really-png.jpg") == PNG


def test_wrong_content_is_refused(pics: Path) -> None:
    with pytest.raises(ImageFileError, match=r"^invalid file type: text/plain; charset=utf-8$"):
        read_image(pics / "notes.png")
    (pics / "anim.png").write_bytes(tiny_image_bytes("GIF"))
    with pytest.raises(ImageFileError, match="invalid file type: image/gif"):
        read_image(pics / "anim.png")
    (pics / "blob.png").write_bytes(bytes(range(256)))
    with pytest.raises(ImageFileError, match="application/octet-stream"):
        read_image(pics / "blob.png")


def test_file_over_100_mb_is_refused(pics: Path) -> None:
    big = pics / "big.png"
    with big.open("wb") as f:  # sparse: a PNG header, then a hole up to the limit + 1
        f.write(PNG[:64])
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(ImageFileError, match=r"file size exceeds maximum limit \(100MB\)"):
        read_image(big)
    os.truncate(big, MAX_IMAGE_BYTES)
    assert len(read_image(big)) == MAX_IMAGE_BYTES


def test_sniffing_signatures() -> None:
    assert sniff_content_type(PNG[:512]) == "image/png"
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"RIFF\x10\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff_content_type(b"RIFF\x10\0\0\0WAVEfmt ") != "image/webp"
    assert sniff_content_type(b"") == "text/plain; charset=utf-8"


def test_encode_image_is_standard_base64() -> None:
    assert base64.b64decode(encode_image(PNG)) == PNG
    assert encode_image(b"\xfb\xff") == "+/8="
