"""Named steps of every replace and publish, where tests inject a crash.

Production code calls ``faults.checkpoint("<step>")`` (a no-op); the crash tests run a save or a
publish in a subprocess that replaces :func:`checkpoint` with one that sends itself SIGKILL at a
chosen step, then check that what is on disk is still whole. The steps:

- ``replace:written``        the new folder is complete under its temporary name
- ``replace:moved-old-aside`` the old folder is renamed to its backup; nothing is at the path (the worst point)
- ``replace:moved-new-in``    the new folder is in place; the backup is not yet deleted
- ``publish:uploading``       after each file uploaded to the staging prefix
- ``publish:uploaded``        every file uploaded, the manifest not yet written
- ``publish:manifest-written`` the manifest exists (the version is published)
- ``pull:downloaded``         every file downloaded and verified, not yet moved into the cache
"""

from __future__ import annotations

__all__ = ["checkpoint", "STEPS"]

STEPS = ("replace:written", "replace:moved-old-aside", "replace:moved-new-in", "publish:uploading",
         "publish:uploaded", "publish:manifest-written", "pull:downloaded")


def checkpoint(step: str) -> None:
    """Mark that ``step`` was reached (does nothing; tests replace it to crash here)."""
