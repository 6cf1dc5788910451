"""Domain errors raised by services. Each face maps them to its own answer (an HTTP 4xx...)."""


class ServiceError(Exception):
    """A request the rules refuse. `message` is safe to show to the user."""

    status = 400

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
