"""Google's import wildcards (`*`, `**`, `?`) and gs:// URI parsing."""

from __future__ import annotations

import pytest

from shared.errors import InvalidArgument
from shared.ports.objects import compile_glob, parse_uri, split_uri

NAMES = [
    "Example.dcm",
    "Example1.dcm",
    "Example01.dcm",
    "Example22.dcm",
    "dir/Example.dcm",
    "dir/Example1.dcm",
    "dir/a.dcm",
    "dir/a.txt",
    "dir/sub/b.dcm",
    "dir/sub/deeper/c.dcm",
    "dir/sub/deeper/c.DCM",
    "dir.dcm",
    "dirx/d.dcm",
    "other/e.dcm",
    "x",
    "xy",
    "x/y",
]


def matched(uri: str) -> list[str]:
    glob = compile_glob(uri)
    return [n for n in NAMES if n.startswith(glob.prefix) and glob.matches(n)]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # the examples of Google's documentation
        (
            "gs://bkt/Example*.dcm",
            ["Example.dcm", "Example1.dcm", "Example01.dcm", "Example22.dcm"],
        ),
        ("gs://bkt/Example?.dcm", ["Example1.dcm"]),
        (
            "gs://bkt/dir/**.dcm",
            [
                "dir/Example.dcm",
                "dir/Example1.dcm",
                "dir/a.dcm",
                "dir/sub/b.dcm",
                "dir/sub/deeper/c.dcm",
            ],
        ),
        # '*' stays within one segment
        (
            "gs://bkt/*.dcm",
            ["Example.dcm", "Example1.dcm", "Example01.dcm", "Example22.dcm", "dir.dcm"],
        ),
        ("gs://bkt/dir/*", ["dir/Example.dcm", "dir/Example1.dcm", "dir/a.dcm", "dir/a.txt"]),
        ("gs://bkt/dir/*/b.dcm", ["dir/sub/b.dcm"]),
        ("gs://bkt/*/a.*", ["dir/a.dcm", "dir/a.txt"]),
        ("gs://bkt/dir*", ["dir.dcm"]),
        # '**' crosses segments and may stand alone or right after a literal
        ("gs://bkt/**", NAMES),
        ("gs://bkt/dir/**", [n for n in NAMES if n.startswith("dir/")]),
        ("gs://bkt/dir**", [n for n in NAMES if n.startswith("dir")]),
        ("gs://bkt/**.DCM", ["dir/sub/deeper/c.DCM"]),
        ("gs://bkt/**c.dcm", ["dir/sub/deeper/c.dcm"]),
        # '?' is exactly one character, never '/'
        ("gs://bkt/x?", ["xy"]),
        ("gs://bkt/x??", []),
        ("gs://bkt/?", ["x"]),
        ("gs://bkt/x?y", []),
        ("gs://bkt/dir/?.dcm", ["dir/a.dcm"]),
        (
            "gs://bkt/*?.dcm",
            ["Example1.dcm", "Example01.dcm", "Example22.dcm", "Example.dcm", "dir.dcm"],
        ),
        # without a wildcard, the URI names one object exactly
        ("gs://bkt/dir/a.dcm", ["dir/a.dcm"]),
        ("gs://bkt/dir", []),
        ("gs://bkt/dir/", []),
        ("gs://bkt/Example", []),
    ],
)
def test_matching(uri: str, expected: list[str]) -> None:
    assert sorted(matched(uri)) == sorted(expected)


@pytest.mark.parametrize(
    ("uri", "prefix", "wildcard"),
    [
        ("gs://bkt/dir/**.dcm", "dir/", True),
        ("gs://bkt/dir/Example*.dcm", "dir/Example", True),
        ("gs://bkt/dir/Ex?mple.dcm", "dir/Ex", True),
        ("gs://bkt/**", "", True),
        ("gs://bkt/*", "", True),
        ("gs://bkt/dir/a.dcm", "dir/a.dcm", False),
        ("gs://bkt/dir/", "dir/", False),
    ],
)
def test_listing_prefix_is_the_literal_head(uri: str, prefix: str, wildcard: bool) -> None:
    glob = compile_glob(uri)
    assert (glob.bucket, glob.prefix, glob.wildcard) == ("bkt", prefix, wildcard)


def test_regex_metacharacters_are_literal() -> None:
    glob = compile_glob("gs://bkt/a.b+(c)$^|{1}/*.dcm")
    assert glob.matches("a.b+(c)$^|{1}/x.dcm")
    assert not glob.matches("aXb+(c)$^|{1}/x.dcm")
    assert compile_glob("gs://bkt/a.dcm").matches("a.dcm")
    assert not compile_glob("gs://bkt/a.dcm").matches("aXdcm")


def test_names_with_unicode_and_spaces() -> None:
    glob = compile_glob("gs://bkt/été 2024/*.dcm")
    assert glob.prefix == "été 2024/"
    assert glob.matches("été 2024/scan 1.dcm")
    assert not glob.matches("été 2024/sub/scan.dcm")


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "gs://",
        "gs://bkt",
        "gs://bkt/",
        "s3://b/x.dcm",
        "gs:/b/x.dcm",
        "/local/path/*.dcm",
        "GS://b/x.dcm",
        "gs://B/x.dcm",  # bucket names are lowercase
        "gs://ab/x.dcm",  # at least 3 characters
        "gs://-b-/x.dcm",
        "gs://bk*/x.dcm",  # no wildcard in the bucket
        "gs://bk?c/x.dcm",
        "gs://**/x.dcm",
        "gs://bkt/[abc].dcm",  # character classes are not Google's
        "gs://bkt/x[0-9].dcm",
        "gs://bkt/x].dcm",
        "gs://bkt/***",
        "gs://bkt/dir/***.dcm",
        "gs://bkt/**/x.dcm",  # '**' in the middle
        "gs://bkt/dir/**/",
        "gs://bkt/**/**",
        "gs://bkt/*/**",  # another wildcard beside '**'
        "gs://bkt/dir/**.dc?",
        "gs://bkt/dir?/**",
        "gs://bkt/**.*",
        "gs://bkt/../x.dcm",
        "gs://bkt/a/./x.dcm",
        "gs://bkt/a/../*.dcm",
        "gs://bkt/a\x00b",
    ],
)
def test_invalid_uris(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        compile_glob(uri)


def test_non_string_uri() -> None:
    with pytest.raises(InvalidArgument):
        split_uri(None)  # type: ignore[arg-type]


def test_parse_uri_names_one_object() -> None:
    assert parse_uri("gs://my-bucket.example/dir/a b.dcm") == ("my-bucket.example", "dir/a b.dcm")
    assert parse_uri("gs://b_1/x") == ("b_1", "x")


@pytest.mark.parametrize(
    "uri",
    [
        "gs://bkt/*.dcm",
        "gs://bkt/x?.dcm",
        "gs://bkt/dir/",
        "gs://bkt/a//b",
        "gs://bkt/..",
        "gs://bkt/a/../b",
        "gs://bkt/a\\b",
        "gs://bkt/a\nb",
        "gs://bkt/" + "x" * 1025,
        "gs://bkt",
        "http://b/x",
    ],
)
def test_parse_uri_refuses(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_uri(uri)
