"""ObjectStorage: any gs://BUCKET/OBJECT a user names (import sources, export targets)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable

from shared.errors import InvalidArgument

# Cloud Storage bucket names: 3-63 characters (up to 222 with dots), lowercase letters,
# digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
MAX_NAME_BYTES = 1024  # Cloud Storage's limit on an object name
_WILDCARDS = frozenset("*?")
_UNSUPPORTED = frozenset("[]")  # gsutil's character classes; Google's import refuses them


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed: its generation changes whenever the object is rewritten."""

    bucket: str
    name: str
    size: int
    generation: str

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


@runtime_checkable
class ObjectStorage(Protocol):
    """Objects of any bucket, addressed by (bucket, name) as `parse_uri` splits them.

    Errors: InvalidArgument for a bucket or name that `validate_name`/`validate_bucket` refuse;
    NotFound for a missing object or bucket.
    """

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose name starts with `prefix`, in lexicographic order of their names."""
        ...

    def open(self, bucket: str, name: str) -> BinaryIO:
        """A readable stream of the whole object; the caller closes it."""
        ...

    def read(self, bucket: str, name: str) -> bytes:
        """The whole object (small objects only, such as filter files)."""
        ...

    def write(
        self,
        bucket: str,
        name: str,
        data: BinaryIO | bytes,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Create or overwrite the object atomically (readers never see a partial object)."""
        ...

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        """Size and generation of the object."""
        ...

    def delete(self, bucket: str, name: str, *, generation: str | None = None) -> bool:
        """Remove the object; False if it was missing or (with `generation`) was rewritten."""
        ...

    def bucket_exists(self, bucket: str) -> bool:
        """True if the bucket exists (and is visible to this process)."""
        ...


def validate_bucket(bucket: str) -> str:
    """The bucket name unchanged, or InvalidArgument."""
    if not _BUCKET_RE.match(bucket):
        raise InvalidArgument(f"invalid Cloud Storage bucket name {bucket!r}")
    return bucket


def validate_name(name: str) -> str:
    """The object name unchanged, or InvalidArgument.

    Stricter than Cloud Storage: names become paths in embedded mode, so every segment that
    could climb out of a bucket, or that a directory cannot hold, is refused in every backend.
    """
    segments = name.split("/")
    bad_segment = any(s in ("", ".", "..") for s in segments)
    bad_char = any(c in name for c in ("\x00", "\r", "\n", "\\"))
    if not name or bad_segment or bad_char or len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(f"invalid Cloud Storage object name {name!r}")
    return name


def split_uri(uri: str) -> tuple[str, str]:
    """(bucket, rest) of a gs:// URI with a valid bucket and a non-empty rest, unchecked."""
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise InvalidArgument(f"a Cloud Storage URI has the form gs://BUCKET/OBJECT: {uri!r}")
    bucket, slash, rest = uri.removeprefix("gs://").partition("/")
    if not slash or not rest:
        raise InvalidArgument(f"a Cloud Storage URI has the form gs://BUCKET/OBJECT: {uri!r}")
    return validate_bucket(bucket), rest


def parse_uri(uri: str) -> tuple[str, str]:
    """(bucket, name) of gs://BUCKET/OBJECT naming one object; InvalidArgument otherwise."""
    bucket, name = split_uri(uri)
    if any(c in _WILDCARDS for c in name):
        raise InvalidArgument(f"wildcards are not allowed in this URI: {uri!r}")
    return bucket, validate_name(name)


# --- wildcards -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectGlob:
    """A compiled gcsSource URI: list `prefix` in `bucket`, keep the names `regex` matches."""

    uri: str
    bucket: str
    prefix: str
    regex: re.Pattern[str]
    wildcard: bool

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None


def compile_glob(uri: str) -> ObjectGlob:
    """Google's import wildcards: `*` within a segment, `?` one character, `**` at the end.

    `**` matches across '/', must come last (a literal suffix without '/' may follow, as in
    `**.dcm`) and excludes every other wildcard. Anything else is InvalidArgument.
    """
    bucket, pattern = split_uri(uri)
    if any(c in _UNSUPPORTED for c in pattern):
        raise InvalidArgument(f"only the wildcards *, ** and ? are supported: {uri!r}")
    if "***" in pattern:
        raise InvalidArgument(f"invalid wildcard '***' in {uri!r}")
    if any(s in (".", "..") for s in pattern.split("/")) or "\x00" in pattern:
        raise InvalidArgument(f"invalid Cloud Storage object name in {uri!r}")
    head, double, tail = pattern.partition("**")
    if double and (any(c in _WILDCARDS for c in head + tail) or "/" in tail):
        raise InvalidArgument(
            f"'**' must be the only wildcard and come at the end of the path "
            f"(optionally followed by an extension, as in **.dcm): {uri!r}"
        )
    first = min((pattern.find(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    regex = "".join(_translate(token) for token in re.split(r"(\*\*|\*|\?)", pattern))
    return ObjectGlob(
        uri=uri,
        bucket=bucket,
        prefix=pattern[:first],
        regex=re.compile(regex, re.DOTALL),
        wildcard=first < len(pattern),
    )


def _translate(token: str) -> str:
    if token == "**":
        return ".*"
    if token == "*":
        return "[^/]*"
    if token == "?":
        return "[^/]"
    return re.escape(token)
