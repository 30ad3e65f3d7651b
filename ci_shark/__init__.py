"""ci_shark: human-approved, DPoP-bound OAuth credentials for CI jobs (RFC 8628 + RFC 9449)."""

__version__ = "0.1.0"
