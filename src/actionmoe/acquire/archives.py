"""Safe extraction of RAR (4 and 5, solid or not, nested), ZIP and TAR archives.

Every entry name is checked before anything is written: absolute paths, ``..`` components and
links that point outside the target are refused. Extraction goes into a temporary sibling folder
that is renamed into place only when complete, so a half-extracted folder never looks finished.

RAR needs no non-free tool: the ``rars`` package is tried first, then the system libarchive
(``libarchive-c``), then the ``bsdtar`` and ``7z`` programs, whichever are installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from actionmoe.errors import ArchiveError, UnsafeArchiveError

log = logging.getLogger(__name__)

RAR4_MAGIC = b"Rar!\x1a\x07\x00"
RAR5_MAGIC = b"Rar!\x1a\x07\x01\x00"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def archive_kind(path: Path) -> str:
    """Return ``rar``, ``zip`` or ``tar`` from the file's first bytes (not its name).

    Raises:
        ArchiveError: missing file, or not an archive of a supported kind.
    """
    if not path.is_file():
        raise ArchiveError(f"archive {path} does not exist or is not a file")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(RAR4_MAGIC) or head.startswith(RAR5_MAGIC):
        return "rar"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    if path.suffix.lower() == ".rar":
        raise ArchiveError(f"{path} is named .rar but is not a RAR archive (first bytes {head[:8]!r})")
    raise ArchiveError(f"{path} is not a RAR, ZIP or TAR archive")


def safe_target(root: Path, name: str) -> Path:
    """Map an archive entry name to a path inside ``root``, refusing names that escape it."""
    normalised = name.replace("\\", "/")
    parts = PurePosixPath(normalised).parts
    if not normalised or normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise UnsafeArchiveError(f"archive entry {name!r} has an absolute path; refusing to extract")
    if ".." in parts:
        raise UnsafeArchiveError(f"archive entry {name!r} points outside the target folder; refusing to extract")
    target = root.joinpath(*[p for p in parts if p not in ("", ".")])
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"archive entry {name!r} resolves outside the target folder; refusing to extract")
    return target


def check_names(root: Path, names: Iterable[str]) -> None:
    for name in names:
        safe_target(root, name)


def check_links(root: Path) -> None:
    """Refuse a tree holding a symbolic link that resolves outside ``root``."""
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                raise UnsafeArchiveError(
                    f"archive entry {path.relative_to(root)} links outside the target folder; refusing to extract"
                )


@dataclass(frozen=True)
class Entry:
    name: str
    size: int  # declared uncompressed size in bytes (0 for folders)


@dataclass(frozen=True)
class ExtractionLimits:
    """What one archive may write: a byte budget and a cap on the compression ratio.

    ``max_bytes`` 0 means the free space of the target's disk minus ``margin_bytes``. The ratio
    (declared bytes / archive bytes) catches decompression bombs: video barely compresses, so an
    HMDB51 archive is close to 1, and even its split text files stay far below the default cap.
    """

    max_bytes: int = 0
    max_ratio: float = 100.0
    margin_bytes: int = 64 << 20


def list_entries(archive: Path) -> list[Entry]:
    """Every entry of ``archive`` with its declared size, read from the archive's headers.

    Raises:
        ArchiveError: the archive is corrupt, truncated or of an unsupported kind.
    """
    kind = archive_kind(archive)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                return [Entry(info.filename, info.file_size) for info in zf.infolist()]
        if kind == "tar":
            with tarfile.open(archive) as tf:
                return [Entry(member.name, member.size) for member in tf.getmembers()]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive} is a corrupt or truncated {kind.upper()} archive: {exc}") from exc
    return _list_rar(archive)


def _list_rar(archive: Path) -> list[Entry]:
    failures = []
    if _rars_available():
        import rars

        try:
            return [Entry(info.filename, int(info.file_size)) for info in rars.RarFile(str(archive)).infolist()]
        except (rars.Error, OSError, ValueError) as exc:
            failures.append(f"rars: {exc}")
    if _libarchive_available():
        import libarchive

        try:
            with libarchive.file_reader(str(archive)) as entries:
                return [Entry(entry.pathname, int(entry.size or 0)) for entry in entries]
        except libarchive.ArchiveError as exc:
            failures.append(f"libarchive: {exc}")
    raise ArchiveError(f"{archive} could not be extracted; it may be corrupt or truncated ({'; '.join(failures)})")


def check_limits(archive: Path, entries: list[Entry], folder: Path, limits: ExtractionLimits) -> None:
    """Refuse, before writing anything, an archive that would write more than ``limits`` allow.

    Raises:
        ArchiveError: naming the declared size, the budget, and the setting that changes it.
    """
    declared = sum(entry.size for entry in entries)
    packed = max(1, archive.stat().st_size)
    if declared / packed > limits.max_ratio:
        raise ArchiveError(
            f"{archive} declares {_size(declared)} of content in {_size(packed)} (compression ratio "
            f"{declared / packed:.0f} > {limits.max_ratio:g}); refusing to extract a possible decompression bomb "
            "(download.max_compression_ratio raises the cap)"
        )
    budget = limits.max_bytes or shutil.disk_usage(folder).free - limits.margin_bytes
    if declared > budget:
        raise ArchiveError(
            f"extracting {archive} would write {_size(declared)} but only {_size(max(budget, 0))} may be written "
            f"to {folder} (free disk space less a margin, or download.max_extract_gb); free space or choose another "
            "--root"
        )


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def extract_archive(archive: Path, dest: Path, limits: ExtractionLimits = ExtractionLimits()) -> Path:
    """Extract ``archive`` so that ``dest`` appears complete or not at all.

    Raises:
        ArchiveError: corrupt, truncated, unsupported, unsafe or oversized archive; ``dest`` already exists.
    """
    with staging_folder(dest) as staging:
        extract_into(archive, staging, limits)
    return dest


@contextlib.contextmanager
def staging_folder(dest: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``dest`` to extract into, renamed to ``dest`` only on success."""
    if dest.exists():
        raise ArchiveError(f"{dest} already exists; remove it to extract again")
    staging = dest.with_name(f".{dest.name}.partial")
    if staging.exists():
        log.info("removing leftover %s from an interrupted run", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract_into(archive: Path, folder: Path, limits: ExtractionLimits = ExtractionLimits()) -> None:
    """Extract every entry of ``archive`` into the existing, empty ``folder``, within ``limits``."""
    kind = archive_kind(archive)
    check_limits(archive, list_entries(archive), folder, limits)
    if kind == "zip":
        _extract_zip(archive, folder)
    elif kind == "tar":
        _extract_tar(archive, folder)
    else:
        _extract_rar(archive, folder)
    check_links(folder)


def _extract_zip(archive: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            check_names(folder, zf.namelist())
            zf.extractall(folder)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive} is a corrupt or truncated ZIP archive: {exc}") from exc


def _extract_tar(archive: Path, folder: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            check_names(folder, [m.name for m in members])
            for member in members:
                if member.issym() or member.islnk():
                    _check_link_target(folder, member.name, member.linkname, member.islnk())
            tf.extractall(folder, filter="data")
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{archive}: {exc}; refusing to extract") from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"{archive} is a corrupt or truncated TAR archive: {exc}") from exc


def _check_link_target(folder: Path, name: str, target: str, hard: bool) -> None:
    base = folder if hard else safe_target(folder, name).parent
    if target.startswith("/") or not (base / target).resolve().is_relative_to(folder.resolve()):
        raise UnsafeArchiveError(f"archive entry {name!r} links to {target!r} outside the target folder")


@dataclass(frozen=True)
class RarBackend:
    """One way of reading RAR files: ``available()`` says whether it can run here."""

    name: str
    available: Callable[[], bool]
    extract: Callable[[Path, Path], None]


def rar_backends() -> list[RarBackend]:
    """The RAR readers in the order they are tried."""
    return [
        RarBackend("rars", _rars_available, _extract_rar_rars),
        RarBackend("libarchive", _libarchive_available, _extract_rar_libarchive),
        RarBackend("bsdtar", lambda: shutil.which("bsdtar") is not None, _extract_rar_bsdtar),
        RarBackend("7z", lambda: _seven_zip() is not None, _extract_rar_7z),
    ]


def available_rar_backends() -> list[str]:
    return [backend.name for backend in rar_backends() if backend.available()]


def _extract_rar(archive: Path, folder: Path) -> None:
    failures = []
    for backend in rar_backends():
        if not backend.available():
            continue
        try:
            backend.extract(archive, folder)
            return
        except UnsafeArchiveError:
            raise
        except ArchiveError as exc:
            failures.append(f"{backend.name}: {exc}")
            _empty_folder(folder)
    if not failures:
        raise ArchiveError(
            "no RAR extractor is available: `pip install rars` (recommended), or install the system "
            "libarchive (`apt-get install libarchive13`) or `apt-get install libarchive-tools 7zip`"
        )
    raise ArchiveError(f"{archive} could not be extracted; it may be corrupt or truncated ({'; '.join(failures)})")


def _empty_folder(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _rars_available() -> bool:
    try:
        import rars  # noqa: F401
    except ImportError:
        return False
    return True


def _extract_rar_rars(archive: Path, folder: Path) -> None:
    import rars

    try:
        rar = rars.RarFile(str(archive))
        infos = rar.infolist()
        check_names(folder, [info.filename for info in infos])
        rar.extractall(str(folder))
    except rars.UnsafeArchivePath as exc:
        raise UnsafeArchiveError(
            f"{archive}: an entry points outside the target folder ({exc}); refusing to extract"
        ) from exc
    except (rars.Error, OSError, ValueError) as exc:
        raise ArchiveError(str(exc)) from exc


def _libarchive_available() -> bool:
    try:
        import libarchive  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _extract_rar_libarchive(archive: Path, folder: Path) -> None:
    import libarchive

    try:
        with libarchive.file_reader(str(archive)) as entries:
            for entry in entries:
                _write_libarchive_entry(folder, entry)
    except libarchive.ArchiveError as exc:
        raise ArchiveError(str(exc)) from exc


def _write_libarchive_entry(folder: Path, entry) -> None:
    target = safe_target(folder, entry.pathname)
    if entry.isdir:
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.issym or entry.islnk:
        _check_link_target(folder, entry.pathname, entry.linkpath, entry.islnk)
        os.symlink(entry.linkpath, target)
        return
    with open(target, "wb") as out:
        for block in entry.get_blocks():
            out.write(block)


def _extract_rar_bsdtar(archive: Path, folder: Path) -> None:
    listing = _run_tool(["bsdtar", "-tf", str(archive)])
    check_names(folder, listing.splitlines())
    _run_tool(["bsdtar", "-xf", str(archive), "-C", str(folder)])


def _seven_zip() -> str | None:
    """A 7-Zip program built with its RAR codec (Debian's ``7zip`` package leaves it out)."""
    for tool in ("7zz", "7z"):
        if shutil.which(tool):
            formats = subprocess.run([tool, "i"], capture_output=True, text=True, check=False).stdout
            if re.search(r"^\s*\S+\s+Rar\s", formats, flags=re.MULTILINE):
                return tool
    return None


def _extract_rar_7z(archive: Path, folder: Path) -> None:
    tool = _seven_zip()
    listing = _run_tool([tool, "l", "-slt", "-ba", str(archive)])
    names = [line.split(" = ", 1)[1] for line in listing.splitlines() if line.startswith("Path = ")]
    check_names(folder, names)
    _run_tool([tool, "x", "-y", f"-o{folder}", str(archive)])


def _run_tool(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise ArchiveError(message[-1] if message else f"{command[0]} exited with {result.returncode}")
    return result.stdout


def extract_nested_rar(outer: Path, dest: Path, limits: ExtractionLimits = ExtractionLimits()) -> list[str]:
    """Extract a RAR of per-class RARs (HMDB51's ``hmdb51_org.rar``) into ``dest/<class>/``.

    The outer archive is unpacked into a private scratch folder beside ``dest`` and each class
    archive into a private folder of its own, so no archive name can collide with the staging.

    Returns:
        The class folder names, sorted.

    Raises:
        ArchiveError: no class archives inside, or two with the same class name.
    """
    with staging_folder(dest) as staging:
        scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.outer-", dir=dest.parent))
        try:
            extract_into(outer, scratch, limits)
            inner_archives = _class_archives(outer, scratch)
            for inner in tqdm(inner_archives, desc="classes", unit="archive", disable=None, leave=False):
                _extract_class_archive(inner, staging, limits)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        classes = sorted(p.name for p in staging.iterdir() if p.is_dir())
    return classes


def _class_archives(outer: Path, scratch: Path) -> list[Path]:
    inner_archives = sorted(scratch.rglob("*.rar"))
    if not inner_archives:
        raise ArchiveError(f"{outer} holds no per-class .rar archives; is it the HMDB51 video archive?")
    seen: dict[str, Path] = {}
    for inner in inner_archives:
        if inner.stem.startswith(".") or not inner.stem:
            raise ArchiveError(f"{outer}: inner archive {inner.name!r} does not name a class; refusing to extract")
        if inner.stem in seen:
            first, second = seen[inner.stem].relative_to(scratch), inner.relative_to(scratch)
            raise ArchiveError(
                f"{outer} holds two archives for class {inner.stem!r} ({first}, {second}); refusing to merge them"
            )
        seen[inner.stem] = inner
    return inner_archives


def _extract_class_archive(inner: Path, staging: Path, limits: ExtractionLimits) -> None:
    """Extract one class archive; its files end up under ``staging/<archive stem>/``."""
    scratch = Path(tempfile.mkdtemp(prefix=".class-", dir=staging))
    try:
        extract_into(inner, scratch, limits)
        children = list(scratch.iterdir())
        if len(children) == 1 and children[0].is_dir() and children[0].name == inner.stem:
            os.replace(children[0], staging / inner.stem)
        else:
            os.replace(scratch, staging / inner.stem)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
