"""Errors of `anc-provision` and the exit code each maps to (the CLI help epilog lists them).

0  ok
1  runtime failure (I/O, network, AWS or broker error, timeout)
2  bad input (invalid serial / thing name / CSR / certificate / passphrase / argument)
3  already exists, refused (a CA, device or bundle that would be overwritten without --force;
   a revoked certificate)
4  not found (no CA in the fleet home, unknown thing)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_EXISTS = 3
EXIT_NOT_FOUND = 4


class ProvisionError(Exception):
    """A failure with a message for the operator and the process exit code it maps to."""

    exit_code = EXIT_RUNTIME
    kind = "runtime_failure"


class BadInputError(ProvisionError):
    exit_code = EXIT_BAD_INPUT
    kind = "bad_input"


class AlreadyExistsError(ProvisionError):
    exit_code = EXIT_EXISTS
    kind = "already_exists"


class NotFoundError(ProvisionError):
    exit_code = EXIT_NOT_FOUND
    kind = "not_found"
