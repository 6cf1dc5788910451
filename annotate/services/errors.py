"""Domain errors raised by services. Each face maps them to its own answer (the API's is an HTTP
4xx in the one error shape of labeling_api.exceptions)."""


class ServiceError(Exception):
    """A request the rules refuse. `message` is safe to show to the user."""

    status = 400
    # The API answer's machine-readable `code`; None: the usual one for `status` ("invalid",
    # "permission_denied", "not_found", "conflict", "too_large"...).
    code: str | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    status = 400


class PermissionDenied(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409
