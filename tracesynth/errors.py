"""The tracesynth exception tree, documented in one place.

Every error tracesynth raises on purpose derives from :class:`TracesynthError`.
The CLI (``tracesynth/cli/``) is the only place that turns them into exit codes:

    TracesynthError            base; exit 1 unless a subclass says otherwise
    ├── UserError              bad input from the user; one line on stderr, exit 2
    │   ├── ConfigError        recipe: bad YAML, unknown key, wrong type, bad --set override
    │   ├── SourceError        a problem source: unreadable file, missing column, bad row
    │   ├── TemplateError      a prompt template references a field the problem lacks
    │   └── DataError          a shipped data set: unknown name, checksum mismatch
    ├── RunLockedError         another process holds the run folder (names its pid); exit 2
    ├── StoreError             a run-store file is not what it should be (duplicate id, bad line)
    ├── TeacherError           the teacher endpoint failed in a way retries cannot fix
    │   └── AuthError          401/403: the run stops at once; names the endpoint, never the key
    ├── BudgetExceeded         the cost cap stopped new work (a clean stop, exit 0 from `harvest`)
    └── VerifierError          a verifier could not run (kept as an `unverifiable` verdict, never raised
                               out of ``verify`` for a single sample)

Messages are one line, name the file / line / field at fault, and never contain secrets.
This module does not log, print or exit.
"""

from __future__ import annotations


class TracesynthError(Exception):
    """Base of every error tracesynth raises on purpose."""

    exit_code: int = 1


class UserError(TracesynthError):
    """The user's input is wrong; the message says where and what."""

    exit_code = 2


class ConfigError(UserError):
    """A recipe could not be read, parsed or validated."""


class SourceError(UserError):
    """A problem source could not be read (file, row, or column named in the message)."""


class TemplateError(UserError):
    """A prompt template could not be rendered for a problem."""


class DataError(UserError):
    """A shipped data set is unknown or does not match its recorded checksum."""


class RunLockedError(TracesynthError):
    """Another live process holds the run folder's lock."""

    exit_code = 2


class StoreError(TracesynthError):
    """A run-store invariant would be broken (e.g. an id written twice)."""


class TeacherError(TracesynthError):
    """The teacher endpoint failed in a way retrying will not fix."""


class AuthError(TeacherError):
    """The endpoint refused our credentials (401/403). Names the endpoint, never the key."""

    exit_code = 2


class BudgetExceeded(TracesynthError):
    """The cost cap was reached; no new requests were started."""


class VerifierError(TracesynthError):
    """A verifier could not run on an input; recorded as an `unverifiable` verdict."""
