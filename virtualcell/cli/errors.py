"""The command line's one error boundary: a user error ends as ``error: <what and the fix>``, never a traceback.

Every command runs inside :class:`ErrorBoundaryGroup.invoke`. What it catches:

* our own errors and the builtin ones that bad input raises (``DataError``, ``ArtifactError``,
  ``StoreError`` are ``ValueError``\\ s; ``KeyError``, ``TypeError``, ``OSError`` and its
  ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError`` ..., ``RuntimeError`` such as
  a missing GPU, ``ImportError`` for a missing optional package, S3 client errors) print
  ``error: ...`` on stderr and exit with code 2;
* anything else is a bug in virtualcell: a short message says so and how to see the traceback;
* click's own errors (bad option syntax, unknown command) keep click's usage message, exit code 2.

``--debug`` (before or after the command) or ``VIRTUALCELL_DEBUG=1`` also prints the traceback.

Messages raised by the Python API name its arguments (``layer='counts'``, ``preprocess=None``); at this
edge :func:`cli_terms` rewrites those the running command has as its options (``--layer counts``,
``--preprocess none``), so the advice is something the user can type.
"""

from __future__ import annotations

import errno
import os
import re
import traceback
import warnings
from collections.abc import Mapping
from typing import Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

try:                                    # typer >= 0.20 vendors click; code may still raise the real one
    import click as _click
except ImportError:                     # pragma: no cover
    _click = None

__all__ = ["ErrorBoundaryGroup", "USER_ERRORS", "explain", "cli_terms", "command_options", "show_warnings", "print_warning",
           "debug_requested",
           "EXIT_USER_ERROR", "EXIT_BUG"]

EXIT_USER_ERROR = 2
EXIT_BUG = 1

#: exception classes that mean "the input or the environment is wrong", not "virtualcell is wrong"
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, TypeError, OSError, RuntimeError,
                                                ImportError, MemoryError)

_OS_FIXES = {
    FileNotFoundError: "check the path (it does not exist)",
    FileExistsError: "something is already at that path, or a file stands where a folder is needed; "
                     "choose another path or move it away",
    IsADirectoryError: "that path is a folder where a file is expected; pass a file path",
    NotADirectoryError: "part of that path is a file where a folder is expected; choose another path",
    PermissionError: "permission denied; choose a path you can read and write, or fix its permissions",
}
_ERRNO_FIXES = {
    errno.ENOSPC: "the disk is full; free space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
}


def debug_requested(ctx: typer.Context | None = None) -> bool:
    """``--debug`` on the command line, or the environment variable ``VIRTUALCELL_DEBUG`` set to 1/true/yes."""
    root = ctx.find_root() if ctx is not None else None
    if root is not None and root.params.get("debug"):
        return True
    return os.environ.get("VIRTUALCELL_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _is_s3_client_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("botocore", "aiobotocore", "s3fs")


def _is_missing_cuda(error: BaseException) -> bool:
    """torch's own assertion when CUDA is used on a build without it (code that skipped ``resolve_device``)."""
    return isinstance(error, AssertionError) and "not compiled with CUDA" in str(error)


def is_user_error(error: BaseException) -> bool:
    """True for errors that bad input or a missing resource raises (see :data:`USER_ERRORS`)."""
    return isinstance(error, USER_ERRORS) or _is_s3_client_error(error) or _is_missing_cuda(error)


def _first_arg(error: BaseException) -> str:
    """``str(error)``, but a ``KeyError``'s message without the quotes ``repr`` adds."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        key = error.args[0]
        return f"{key!r} not found (no such name, key or column)" if key and " " not in key else key
    return str(error)


def _explain_os_error(error: OSError) -> str:
    if error.errno is not None and error.strerror and error.filename is not None:   # a raw system error
        where = str(error.filename) + (f" -> {error.filename2}" if error.filename2 is not None else "")
        fix = _ERRNO_FIXES.get(error.errno) or next(
            (text for kind, text in _OS_FIXES.items() if isinstance(error, kind)), "check the path and try again")
        return f"{error.strerror}: {where}; {fix}."
    message = str(error)
    if "synchronously open" in message or "file signature not found" in message or "truncated file" in message:
        return (f"an HDF5 (.h5ad) input could not be opened ({message}); is it complete (not truncated or "
                "still being written) and an .h5ad written by anndata?")
    return message


def explain(error: BaseException) -> str:
    """One line for the user: what is wrong and, where we know it, the fix."""
    if _is_s3_client_error(error):
        name = type(error).__name__
        if name == "NoCredentialsError":
            return ("S3 refused the request: no AWS credentials were found. Set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or a profile in ~/.aws/credentials), and AWS_ENDPOINT_URL for a "
                    "non-AWS server.")
        return f"S3 error ({name}: {error}); check the bucket name, your credentials and the endpoint URL."
    if _is_missing_cuda(error):
        return f"CUDA was requested but {error} (this torch has no GPU support); use --device cpu or --device auto."
    if isinstance(error, ImportError) and not isinstance(error, ModuleNotFoundError) and "s3fs" in str(error):
        return f"{error} For s3:// URLs install the S3 extra: pip install \"virtualcell[s3]\"."
    if isinstance(error, ModuleNotFoundError):
        missing = error.name or str(error)
        if missing.split(".")[0] == "s3fs":
            return "s3:// URLs need s3fs, which is not installed; install it with: pip install \"virtualcell[s3]\"."
        return f"{error}; install the package that provides {missing.split('.')[0]!r} and retry."
    if isinstance(error, MemoryError):
        return "ran out of memory; subsample the cells or genes, or use a machine with more memory."
    if isinstance(error, RuntimeError) and "out of memory" in str(error).lower():
        return f"{error}; the device ran out of memory: use a smaller batch, fewer cells, or --device cpu."
    if isinstance(error, OSError):
        return _explain_os_error(error)
    message = _first_arg(error).strip()
    return message or f"{type(error).__name__} with no message"


#: Python arguments whose CLI option is named differently (the rest map ``name`` -> ``--name``)
_RENAMED = {"covariate_keys": "covariate", "label_key": "label-key", "spatial_key": "spatial-key"}
_VALUE = r"(None|True|False|\.\.\.|'[^'\n]*'|\"[^\"\n]*\"|-?\d[\w.+-]*)"
_ARGUMENT = re.compile(r"(\b[A-Z]\w*\()?(?<!option )(?<!['\"])\b([a-z_][a-z0-9_]*)=" + _VALUE + r"(\))?")
_CLI_HINT = re.compile(r"\s*\(CLI: ([^()]*)\)")
_ENUM_NONE = {"--preprocess"}   # options whose value 'none' stands for Python's None


def command_options(command: Any) -> dict[str, str]:
    """``{python_name: "--cli-option"}`` of a click command (of every subcommand, for a group)."""
    if command is None:
        return {}
    out: dict[str, str] = {}
    for sub in getattr(command, "commands", {}).values():
        out.update(command_options(sub))
    for param in getattr(command, "params", []):
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if getattr(param, "param_type_name", "") == "option" and opts and param.name:
            out[param.name] = opts[0]
    for python, cli in _RENAMED.items():
        if f"--{cli}" in out.values():
            out.setdefault(python, f"--{cli}")
    return out


def _as_option(flag: str, value: str) -> str:
    if value == "None":
        return f"{flag} none" if flag in _ENUM_NONE else f"no {flag}"
    if value == "True":
        return flag
    if value == "False":
        return f"no {flag}"
    if value == "...":
        return f"{flag} VALUE"
    return f"{flag} {value.strip(chr(39) + chr(34))}"


def cli_terms(message: str, options: Mapping[str, str]) -> str:
    """``message`` with every ``name=value`` of a Python argument the command has as an option rewritten as
    that option (``layer='counts'`` -> ``--layer counts``; ``Pipeline(preprocess=None)`` -> ``--preprocess none``)."""
    if not options:
        return message

    def replace(match: re.Match) -> str:
        call, name, value, close = match.groups()
        flag = options.get(name)
        if flag is None:
            return match.group(0)
        text = _as_option(flag, value)
        if call and close:
            return text
        return (call or "") + text + (close or "")

    text = _ARGUMENT.sub(replace, message)
    # "context_key='x' (CLI: --context-key x)" became "--context-key x (CLI: --context-key x)": say it once
    return _CLI_HINT.sub(lambda m: "" if m.group(1) in text.replace(m.group(0), "") else m.group(0), text)


def print_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """``warnings.showwarning`` while a command runs: ``warning: <text>`` on stderr with the command's option
    names (no file path, no source line); deprecations, meant for code, are left out."""
    if issubclass(category, DeprecationWarning):
        return
    context = _click.get_current_context(silent=True) if _click is not None else None
    options = command_options(context.command) if context is not None else {}
    typer.secho(f"warning: {cli_terms(str(message), options)}", fg=typer.colors.YELLOW, err=True)


def show_warnings(caught: list, *, skip: tuple[str, ...] = ()) -> None:
    """Print the Python warnings ``caught`` while a command ran as ``warning: ...`` lines on stderr, with the
    running command's options for Python arguments; warnings whose class name is in ``skip`` (already said
    by the command) and deprecations (meant for code, not for the command line) are left out."""
    context = _click.get_current_context(silent=True) if _click is not None else None
    options = command_options(context.command) if context is not None else {}
    seen = set()
    for warning in caught:
        category = warning.category
        if issubclass(category, DeprecationWarning) or category.__name__ in skip:
            continue
        text = cli_terms(str(warning.message), options)
        if text not in seen:
            seen.add(text)
            typer.secho(f"warning: {text}", fg=typer.colors.YELLOW, err=True)


def report(error: BaseException, debug: bool, options: Mapping[str, str] | None = None) -> int:
    """Print the error (and with ``debug`` its traceback) on stderr; returns the exit code. ``options``
    (``{python_name: "--option"}`` of the running command) turn Python arguments in the message into options."""
    if debug:
        typer.echo("".join(traceback.format_exception(error)), err=True, nl=False)
    if is_user_error(error):
        typer.secho(f"error: {cli_terms(explain(error), options or {})}", fg=typer.colors.RED, err=True)
        return EXIT_USER_ERROR
    how = "Please report it" if debug else "Rerun with --debug (or VIRTUALCELL_DEBUG=1) to see the traceback, and report it"
    typer.secho(f"error: unexpected {type(error).__name__}: {error}\nThis is a bug in virtualcell, not in your "
                f"input. {how} to the virtualcell maintainers with the command you ran.",
                fg=typer.colors.RED, err=True)
    return EXIT_BUG


class ErrorBoundaryGroup(TyperGroup):
    """The top-level command group; its ``invoke`` (which runs every command) is the error boundary."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with warnings.catch_warnings():            # restores showwarning for code that calls app() in-process
                warnings.showwarning = print_warning
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise                                      # typer's own: usage errors, typer.Exit, Ctrl-C
        except Exception as error:                     # noqa: BLE001 - this is the boundary
            if _click is not None and isinstance(error, _click.exceptions.Exit):
                raise typer.Exit(error.exit_code) from None
            if _click is not None and isinstance(error, _click.ClickException):
                typer.secho(f"error: {error.format_message()}", fg=typer.colors.RED, err=True)
                raise typer.Exit(error.exit_code) from None
            if _click is not None and isinstance(error, _click.exceptions.Abort):
                raise typer.Abort() from None
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if name else None
            raise typer.Exit(report(error, debug_requested(ctx), command_options(command))) from None
