"""The one exception tree of the product; each class knows its HTTP status and Google status.

Every adapter, local or cloud, raises these classes and nothing else for expected failures,
so the web layer maps errors to responses in exactly one place (`shared.web.responses`).
"""

from __future__ import annotations


class DicomStoreError(Exception):
    """Base of every expected failure; unexpected ones are bugs and map to 500."""

    http_status: int = 500
    grpc_status: str = "INTERNAL"
    grpc_code: int = 13

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DicomStoreError):
    """The request is malformed: bad UID, bad query parameter, bad body. Fix the request."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    grpc_code = 3


class Unauthenticated(DicomStoreError):
    """No or wrong bearer token was sent to a server that requires one."""

    http_status = 401
    grpc_status = "UNAUTHENTICATED"
    grpc_code = 16


class NotFound(DicomStoreError):
    """The named store, study, series, instance, frame, operation or blob does not exist."""

    http_status = 404
    grpc_status = "NOT_FOUND"
    grpc_code = 5


class MethodNotAllowed(DicomStoreError):
    """The path exists but not with this HTTP method."""

    http_status = 405
    grpc_status = "UNIMPLEMENTED"
    grpc_code = 12


class NotAcceptable(DicomStoreError):
    """No media type in the Accept header can be produced, or the transcoding is impossible."""

    http_status = 406
    grpc_status = "FAILED_PRECONDITION"
    grpc_code = 9


class AlreadyExists(DicomStoreError):
    """A resource with that name exists already (store, dataset, instance with other bytes)."""

    http_status = 409
    grpc_status = "ALREADY_EXISTS"
    grpc_code = 6


class Conflict(DicomStoreError):
    """The target is being changed by another operation (for example a study under deletion)."""

    http_status = 409
    grpc_status = "ABORTED"
    grpc_code = 10


class PreconditionFailed(DicomStoreError):
    """A conditional write lost: the object changed since it was read (generation mismatch)."""

    http_status = 412
    grpc_status = "FAILED_PRECONDITION"
    grpc_code = 9


class PayloadTooLarge(DicomStoreError):
    """The request body exceeds the limit Google sets for that method."""

    http_status = 413
    grpc_status = "INVALID_ARGUMENT"
    grpc_code = 3


class UnsupportedMediaType(DicomStoreError):
    """The request Content-Type is not one this endpoint reads (Google answers 400)."""

    http_status = 400
    grpc_status = "INVALID_ARGUMENT"
    grpc_code = 3


class RangeNotSatisfiable(DicomStoreError):
    """An HTTP Range header asks for bytes outside the resource."""

    http_status = 416
    grpc_status = "OUT_OF_RANGE"
    grpc_code = 11


class ResourceExhausted(DicomStoreError):
    """A quota or concurrency limit was hit; retry later with back-off."""

    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"
    grpc_code = 8


class Unavailable(DicomStoreError):
    """A backend is temporarily unreachable; retry later."""

    http_status = 503
    grpc_status = "UNAVAILABLE"
    grpc_code = 14


class ConfigurationError(DicomStoreError):
    """The process environment is missing or has an invalid setting; fix the deployment."""


class InvalidDicom(InvalidArgument):
    """Bytes that should be a DICOM Part-10 instance are not, or lack a required attribute."""
