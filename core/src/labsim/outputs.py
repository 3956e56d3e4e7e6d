"""A run's output files as one set: checked before the run, renamed in together after it.

* Before simulating, :func:`prepare_folders` creates the output folders (a clear
  error when a folder lies under a file, or cannot be written) and removes the
  temporary files of earlier runs that were killed (``.requests.csv.tmp-PID``
  whose process is gone).
* After simulating, :func:`commit` takes the staged (temporary, destination)
  pairs of every sink, checks every destination, and renames them all
  (summary.json last, so its presence means the set is complete). When anything
  fails, every temporary file is removed and no output of this run appears.
* Each output folder keeps a manifest (``.labsim-outputs.json``) of the files the
  last run wrote there; files of an earlier run into the same folder that this run
  did not write again (an old ``steps.csv``) are removed, so a folder never mixes
  two runs.
"""

from __future__ import annotations

import contextlib

import json
import os
import re
import tempfile
from pathlib import Path


from labsim.log import get_logger
from labsim.errors import UsageError

log = get_logger("labsim.outputs")

MANIFEST = ".labsim-outputs.json"
_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_dead_temporaries(folder: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` files in *folder* whose process no longer runs."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMP.match(name)
        if match and not _alive(int(match.group(1))):
            path = Path(folder) / name
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
            except OSError:
                pass
    if removed:
        log.info("removed_dead_temporaries", folder=str(folder), files=[p.name for p in removed])
    return removed


def prepare_folders(folders, files=()) -> None:
    """Create each output folder, check it can be written, and sweep dead runs' temporaries.

    :param files: destinations known in advance; each must not be a folder.
    :raises UsageError: naming the path and what is wrong.
    """
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UsageError(f"cannot write outputs to {folder}: it exists and is not a folder") from None
        except OSError as ex:
            raise UsageError(f"cannot write outputs to {folder}: {ex.strerror or ex}") from None
        try:
            handle, probe = tempfile.mkstemp(prefix=".labsim-probe-", dir=folder)
            os.close(handle)
            os.unlink(probe)
        except OSError as ex:
            raise UsageError(
                f"cannot write outputs to {folder}: {ex.strerror or ex}"
            ) from None
        sweep_dead_temporaries(folder)
    for path in files:
        if Path(path).is_dir():
            raise UsageError(f"cannot write output {path}: it is a folder")


def commit(staged: list[tuple[Path, Path]], out_dir: Path | None) -> list[Path]:
    """Rename every staged (temporary, destination) pair into place, summary.json last.

    :raises UsageError: when a destination cannot take the file; then nothing is renamed
        and every temporary file is removed.
    """
    try:
        for _, dest in staged:
            if dest.is_dir():
                raise UsageError(f"cannot write output {dest}: it is a folder; nothing was written")
    except BaseException:
        discard(staged)
        raise
    ordered = sorted(staged, key=lambda pair: pair[1].name == "summary.json")
    done = []
    try:
        for temp, dest in ordered:
            os.replace(temp, dest)
            done.append(dest)
    except OSError as ex:
        discard(staged)
        raise UsageError(f"cannot write output {dest}: {ex.strerror or ex}") from None
    if out_dir is not None:
        _replace_manifest(Path(out_dir), done)
    return done


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove the temporary files of *staged*."""
    for temp, _ in staged:
        try:
            Path(temp).unlink(missing_ok=True)
        except OSError:
            pass


def _replace_manifest(folder: Path, written: list[Path]) -> None:
    """Remove the files an earlier run listed in *folder*'s manifest and this run did not
    write again, then list this run's files."""
    names = sorted(p.name for p in written if p.parent.resolve() == folder.resolve())
    manifest = folder / MANIFEST
    if not manifest.exists():
        foreign = sorted(
            p.name
            for p in folder.glob("*")
            if p.suffix in (".csv", ".json") and p.name not in names and p.is_file()
        )
        if foreign:
            log.warning(
                "outputs_beside_others",
                folder=str(folder),
                files=foreign,
                reason="not written by this run (an earlier run's outputs?)",
            )
    try:
        old = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        old = []
    stale = [n for n in old if isinstance(n, str) and n not in names and "/" not in n]
    for name in stale:
        path = folder / name
        try:
            if path.is_file():
                path.unlink()
        except OSError:
            pass
    if stale:
        log.warning(
            "removed_stale_outputs",
            folder=str(folder),
            files=stale,
            reason="written by an earlier run into the same folder, not by this one",
        )
    try:
        manifest.write_text(json.dumps({"files": names}) + "\n", encoding="utf-8")
    except OSError:
        pass


def temp_for(path: Path) -> Path:
    """The temporary file *path* is written to before it is renamed into place
    (``.NAME.tmp-PID``, which :func:`sweep_dead_temporaries` recognises)."""
    return Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temporary path beside *path* to write to; renamed onto *path* when the block ends
    well, removed when it raises, so *path* is written whole or not at all.

    >>> with atomic_path(Path("out.csv")) as tmp:       # doctest: +SKIP
    ...     tmp.write_text("a,b\\n")
    """
    path = Path(path)
    temp = temp_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise UsageError(f"{path}: cannot write there ({ex.strerror or ex})") from None
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
