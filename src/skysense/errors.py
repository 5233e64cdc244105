"""Errors a user can fix, and how the ``skysense`` command reports them.

Every problem a user can cause — a bad option, a missing or corrupt file, a band that is not there, units that do
not fit, a checkpoint that is not ours — is raised with a message that names the file, band or option, says what is
wrong and what to do. The command prints it as one line::

    skysense <command>: <file or option>: <problem>; <what to do>

with exit code 2 for usage errors (options) and 1 for data errors (files, checkpoints, the disk), and shows the
traceback only with ``--debug`` (or ``SKYSENSE_DEBUG=1``). Anything else — a bug — keeps its traceback.

Which exceptions count as expected (:func:`expected_exit_code`):

- :class:`SkysenseError` and its subclasses :class:`UsageError` (exit 2) and :class:`InputError` (exit 1);
- ``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError``, ``PermissionError``, and ``OSError`` with a
  full-disk / file-too-large / read-only errno (exit 1);
- ``rasterio.errors.RasterioError`` and GDAL's own errors (``CPLE_BaseError``) (exit 1);
- a ``ValueError``, ``KeyError`` or ``RuntimeError`` *raised by skysense's own code* (the innermost frame of its
  traceback is in the ``skysense`` package): those are the checks that name a file or an option. The same types
  raised inside torch or numpy are bugs and keep their traceback.

``UsageError`` and ``InputError`` subclass ``ValueError``, so code (and tests) that catch ``ValueError`` keep working.
"""

from __future__ import annotations

import argparse
import errno
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

USAGE = 2  # exit code of a bad option
DATA = 1  # exit code of bad data (a file, a checkpoint, the disk)
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT), as shells use

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


class SkysenseError(Exception):
    """A problem the user can fix; its message names the file, band or option and what to do."""

    exit_code = DATA


class UsageError(SkysenseError, ValueError):
    """A bad command-line option or argument value (exit code 2)."""

    exit_code = USAGE


class InputError(SkysenseError, ValueError):
    """Bad input data: an unreadable, corrupt, mis-tagged or mismatching file or checkpoint (exit code 1)."""

    exit_code = DATA


class OutputError(SkysenseError, OSError):
    """Output could not be written (a full disk, a file-size limit, no permission), naming the file (exit code 1)."""

    exit_code = DATA

    @classmethod
    def writing(cls, path: str | Path, what: str, err: BaseException) -> OutputError:
        """The error for a failed write of ``what`` to ``path`` caused by ``err``."""
        return cls(
            f"{path}: cannot write {what} ({one_line(err)}); free space on the disk (or raise the file-size limit, "
            "or fix the folder's permissions) and run again"
        )


class Interrupted(SkysenseError):
    """A run stopped by Ctrl-C; the message says what was kept and the exact command that resumes it."""

    exit_code = INTERRUPTED


def raised_in(err: BaseException, directory: Path) -> bool:
    """True when the innermost frame of ``err``'s traceback is code under ``directory`` (a resolved path)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(directory)


def _raised_by_skysense(err: BaseException) -> bool:
    """True when the innermost frame of ``err``'s traceback is skysense code (a deliberate, worded check), also for an
    error raised in a DataLoader worker (re-raised by torch with the worker's traceback as its message)."""
    worker = _worker_traceback(err)
    if worker is not None:
        files = re.findall(r'File "([^"]+)"', worker)
        return bool(files) and Path(files[-1]).resolve().is_relative_to(PACKAGE_DIR)
    return raised_in(err, PACKAGE_DIR)


def _worker_traceback(err: BaseException) -> str | None:
    """The worker's traceback text of an error torch's DataLoader re-raised in the main process, else None."""
    text = str(err.args[0]) if len(err.args) == 1 and isinstance(err.args[0], str) else ""
    if text.startswith("Caught ") and " in DataLoader worker process " in text and "Original Traceback" in text:
        return text
    return None


def expected_exit_code(err: BaseException) -> int | None:
    """The exit code for an error the user caused, or None for an unexpected one (a bug: show its traceback)."""
    if isinstance(err, SkysenseError):
        return err.exit_code
    if isinstance(err, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return DATA
    if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
        return DATA
    from rasterio._err import CPLE_BaseError  # GDAL's errors, raised by rasterio as they are
    from rasterio.errors import RasterioError

    if isinstance(err, (RasterioError, CPLE_BaseError)):
        return DATA
    if isinstance(err, (ValueError, KeyError, RuntimeError)) and _raised_by_skysense(err):
        return DATA
    return None


def one_line(err: BaseException) -> str:
    """The error's message and its notes (``__notes__``: e.g. what a failed run kept) on one line (a KeyError's
    message is unquoted; a full-disk OSError names its file)."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    elif isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
        where = f"{err.filename}: " if err.filename else ""
        text = f"{where}{err.strerror or err}; free space (or raise the file-size limit) and run again"
    else:
        text = str(err) or type(err).__name__
    worker = _worker_traceback(err)
    if worker is not None:  # the worker's own message: the traceback's last line, without the exception's name
        text = re.sub(r"^[\w.]+: ", "", worker.rstrip().splitlines()[-1], count=1)
    notes = [str(n) for n in getattr(err, "__notes__", []) or []]
    return " ".join("; ".join([text, *notes]).split())


# ------------------------------------------------------------------------------------------------------------------
# Command-line parsing that reports in one line
# ------------------------------------------------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are a :class:`UsageError` (one line, exit code 2) instead of a
    usage block; subparsers made from it are of the same class."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{self.prog} --help`")


def int_at_least(minimum: int) -> type:
    """An argparse ``type`` for integers ``>= minimum`` whose error states the allowed range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give an integer >= {minimum}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is out of range; give an integer >= {minimum}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse  # type: ignore[return-value]
