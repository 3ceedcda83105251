"""What ``hintpool bench`` needs from its surroundings: a progress bar and
a status line on stderr (none with ``--json`` or without rich), enough file
descriptors for the many-origins workload, and the machine's description
for the report."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["machine", "progress", "raise_fd_limit", "status"]


@contextmanager
def progress(total: int, quiet: bool) -> Iterator[Callable[[str], None]]:
    """A rich progress bar on stderr (none with --json or without rich)."""
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        quiet = True
    if quiet:
        yield lambda description: None
        return
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("bench", total=total)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        yield advance


@contextmanager
def status(text: str, quiet: bool) -> Iterator[None]:
    try:
        from rich.console import Console
    except ImportError:
        quiet = True
    if quiet:
        yield
        return
    with Console(stderr=True).status(text):
        yield


def raise_fd_limit(wanted: int) -> None:
    """Many origins need a file descriptor per connection: raise the soft limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows has no rlimits
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def machine() -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    names = ("hintpool", "httpx", "httpcore", "h11", "anyio", "aiohttp", "urllib3")
    for name in (*names, "httptools", "uvloop"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "implementation": platform.python_implementation(),
        "versions": versions,
    }
