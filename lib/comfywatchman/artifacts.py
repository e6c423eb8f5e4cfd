"""Reading and writing the JSON artifacts that stages hand to each other.

Every artifact has a JSON Schema in ``schemas/``. Reads validate before anything is used; writes validate before
anything touches the disk and then go through a temp file in the same folder, fsync and rename, so a killed
cycle leaves either the old file or the new one, never a torn one. A file safe to lose (a cache, a stage's
record of its inputs) skips the fsync (``atomic_write_bytes(durable=False)``): still whole after a kill.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import re
import stat
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson

from comfywatchman import file_identity
from comfywatchman import lock as lock_module
from comfywatchman import resources as resources_module
from comfywatchman.errors import ArtifactError

if TYPE_CHECKING:
    # jsonschema (with referencing and attrs, a tenth of a second to import) only words the errors of a
    # document jsonschema-rs refused: it is imported then, not by every process that reads an artifact.
    import jsonschema
    from referencing import Registry

logger = logging.getLogger(__name__)


SCHEMA_BASE = "https://comfywatchman.dev/schemas/"


def schema_uri(schema_name: str) -> str:
    """Return the ``$id`` of the schema ``schema_name`` (``SCHEMA_BASE`` + its file name)."""
    return f"{SCHEMA_BASE}{schema_name}.schema.json"


@cache
def _schemas() -> dict[str, Any]:
    """Return every schema in ``schemas/`` by its ``$id``, checking each file states the ``$id`` its name
    gives (so validators other than this module, check-jsonschema for one, resolve the same references)."""
    found = {}
    for path in sorted(resources_module.SCHEMAS_DIR.glob("*.schema.json")):
        schema = orjson.loads(path.read_bytes())  # every process reads all of them: orjson, several times faster
        expected = SCHEMA_BASE + path.name
        if schema.get("$id") != expected:
            raise ArtifactError(f'{path}: "$id" must be {expected!r}, not {schema.get("$id")!r}')
        found[expected] = schema
    return found


@cache
def _registry() -> Registry:
    """Return a jsonschema registry of every schema, so one schema can ``$ref`` another by file name."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT202012)) for uri, schema in _schemas().items()
    )


@cache
def _rs_registry() -> jsonschema_rs.Registry:
    """Return the same registry for jsonschema-rs."""
    return jsonschema_rs.Registry(list(_schemas().items()))


def schema_document(schema_name: str) -> dict[str, Any]:
    """Return the schema ``schema_name`` as ``schemas/`` holds it (shared: copy it before changing it)."""
    return dict(_schemas()[schema_uri(schema_name)])


def _target(schema_name: str, definition: str | None) -> dict[str, Any]:
    """Return the schema ``schema_name`` itself, or a reference to its ``$defs/definition``."""
    if definition is None:
        return dict(_schemas()[schema_uri(schema_name)])
    return {"$ref": f"{schema_uri(schema_name)}#/$defs/{definition}"}


@cache
def fast_validator(schema_name: str, definition: str | None = None) -> Any:
    """Return a (cached) jsonschema-rs validator, formats checked, for ``schema_name`` or its
    ``$defs/definition``: the yes/no answer on every read and write, in a fraction of jsonschema's time."""
    return jsonschema_rs.Draft202012Validator(
        _target(schema_name, definition), registry=_rs_registry(), validate_formats=True
    )


@cache
def validator(schema_name: str, definition: str | None = None) -> jsonschema.Draft202012Validator:
    """Return a (cached) jsonschema validator for ``schema_name`` (or its ``$defs/definition``), used to
    word the errors of a document the fast validator refused."""
    import jsonschema

    return jsonschema.Draft202012Validator(
        _target(schema_name, definition), registry=_registry(), format_checker=jsonschema.FormatChecker()
    )


def json_path(parts: Iterable[Any]) -> str:
    """Given a jsonschema error path, return it dotted (``schedule.min_vram_gb``, ``items[3].name``)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_errors(instance: Any, schema_name: str, source: str, definition: str | None = None) -> list[str]:
    """Return every schema violation of ``instance`` as ``SOURCE: at 'PATH': MESSAGE`` lines (empty if valid).

    With ``definition``, ``instance`` is checked against ``$defs/definition`` of the schema instead (one
    item of a large artifact, validated where it is made).
    """
    fast = fast_validator(schema_name, definition)
    if fast.is_valid(instance):
        return []
    # jsonschema words errors best (and config errors are read by people); jsonschema-rs adds what
    # jsonschema's format checker does not check without optional packages (date-time, for one).
    found: dict[str, str] = {}
    worded = sorted(validator(schema_name, definition).iter_errors(instance), key=lambda e: list(map(str, e.path)))
    for error in worded:
        found.setdefault(json_path(error.absolute_path), error.message)
    for error in fast.iter_errors(instance):
        where = json_path(error.instance_path)
        if where not in found:
            found[where] = error.message
    lines = []
    for where, message in found.items():
        lines.append(f"{source}: at '{where}': {message}" if where else f"{source}: {message}")
    return lines


def validate(instance: Any, schema_name: str, source: str, definition: str | None = None) -> None:
    """Raise ArtifactError naming ``source`` and every problem if ``instance`` violates ``schema_name`` (or its
    ``$defs/definition`` when given)."""
    errors = schema_errors(instance, schema_name, source, definition)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ArtifactError(errors[0] + more)


def read(path: Path, schema_name: str, handed_over: bool = False) -> Any:
    """Return the validated content of the artifact at ``path``.

    Raise ArtifactError with a one-line message naming the file when it is missing, unreadable, not JSON
    (a torn write shows up here) or not valid against its schema. With ``handed_over``, the document this
    process wrote there with ``hand_over`` is taken when the file is still the one it wrote (same identity:
    nothing wrote it since); the caller must not change what it gets.
    """
    if handed_over and path in _handed:
        written, schema, document = _handed.pop(path)
        if written is not None and schema == schema_name and file_identity.of(path) == written:
            return document
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (run the stage that writes it first)") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # bytes no stage writes: a damaged or foreign file
        raise ArtifactError(f"{path}: not valid JSON (not UTF-8 text at byte {exc.start})") from None
    try:
        data = loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    validate(data, schema_name, str(path))
    return data


_TOP_LEVEL_KEY = re.compile(rb'^  "((?:[^"\\]|\\.)*)": ', re.MULTILINE)


def read_top_level(path: Path, keys: Iterable[str]) -> dict[str, Any] | None:
    """Return the values of ``keys`` in the two-space indented artifact at ``path`` (as ``dumps`` writes it),
    parsing only them: a report of many megabytes is not loaded whole to read its summary. Top-level keys are
    the only lines that start with two spaces and a quote (a string holds no raw newline). Return None when
    the file is missing, not in that layout, or lacks one of ``keys``: the caller then reads it whole."""
    try:
        # Mapped, not read: the report holds every workflow (tens of megabytes), and only a few of its keys
        # are wanted; the pages are the file cache's, not a copy in this process.
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _top_level_values(data, keys)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None


def _top_level_values(data: mmap.mmap, keys: Iterable[str]) -> dict[str, Any] | None:
    """Return the values of ``keys`` in the artifact text ``data`` (see ``read_top_level``), or None."""
    if data[:2] != b"{\n":
        return None
    marks = []
    # find jumps from line to line where the regex alone tried every byte (0.1 s on a report of 20 MB).
    at = data.find(b'\n  "')
    while at >= 0:
        found_key = _TOP_LEVEL_KEY.match(data, at + 1)
        if found_key:
            marks.append((found_key.start(), found_key.end(), found_key.group(1)))
        at = data.find(b'\n  "', at + 1)
    wanted = {key.encode("utf-8") for key in keys}
    found: dict[str, Any] = {}
    for index, (_, value_start, key) in enumerate(marks):
        if key not in wanted:
            continue
        value_end = marks[index + 1][0] if index + 1 < len(marks) else data.rfind(b"\n}")
        if value_end < value_start:
            return None
        chunk = data[value_start:value_end].rstrip().removesuffix(b",")
        try:
            found[key.decode("utf-8")] = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            return None
    return found if len(found) == len(wanted) else None


def read_optional(path: Path, schema_name: str) -> Any | None:
    """Return the validated artifact at ``path``, or None when it does not exist.

    A file that exists but is broken still raises ArtifactError: callers decide whether that is fatal.
    """
    if not path.exists():
        return None
    return read(path, schema_name)


def read_cache(path: Path, otherwise: str) -> bytes | None:
    """Return the bytes of the cache file ``path``, or None when it is missing or cannot be read (logged as a
    warning saying what is done ``otherwise``): a cache costs time when lost, never a failed stage."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("%s: unreadable (%s); %s", path, exc.strerror or exc, otherwise)
        return None


def loads(text: str | bytes) -> Any:
    """Return the JSON value of ``text``, parsed by orjson (several times faster than the standard library on
    artifacts of megabytes); what orjson refuses (NaN, integers beyond 64 bits) is parsed by the standard
    library, whose ``json.JSONDecodeError`` (line and column) is what a caller sees for text that is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(data: Any, indent: int | None = 2) -> str:
    """Return the canonical text of an artifact: sorted keys, two-space indent (or compact with
    ``indent=None``: the choice for artifacts of many megabytes that only programs read), trailing newline.

    orjson encodes it (tens of times faster than the standard library's indenting encoder); data it refuses
    (keys that are not strings, integers beyond 64 bits, lone surrogates) goes to the standard library,
    which then behaves as it always did. Both give the same text for plain JSON data, bar how a float with
    an exponent is spelled."""
    encoded = _orjson_bytes(data, indent)
    if encoded is not None:
        return encoded.decode("utf-8") + "\n"
    if indent is None:
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


def _orjson_bytes(data: Any, indent: int | None) -> bytes | None:
    """Return ``data`` encoded by orjson as ``dumps`` writes it (without the trailing newline), or None when
    orjson cannot (another indent, or data it refuses)."""
    if indent not in (None, 2):
        return None
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent == 2 else 0)
    try:
        return orjson.dumps(data, option=option)
    except TypeError:
        return None


def content_hash(data: Any) -> str:
    """Return the sha256 of ``data``'s canonical compact JSON, used to decide whether a rewrite is needed."""
    compact = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(compact.encode("utf-8")).hexdigest()


def temp_beside(path: Path) -> tuple[int, str]:
    """Create a new, empty file in ``path``'s folder, readable and writable by its owner alone, named
    ``temp_prefix(path)``, a random part and ``.tmp``; return its descriptor (open for reading and writing) and
    its path. What ``tempfile.mkstemp`` does, without loading tempfile (and shutil, bz2, lzma and random with
    it): a few milliseconds of every process."""
    start = os.path.join(path.parent, temp_prefix(path))
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    while True:
        name = f"{start}{os.urandom(6).hex()}.tmp"
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:  # 48 random bits taken already: another name
            continue


def temp_prefix(path: Path) -> str:
    """Return the name prefix of the temp files a write to ``path`` goes through: ``.NAME.PID.``.

    The writer's pid in the name tells ``remove_stale_temp_files`` whether a live process may still own it.
    """
    return f".{path.name}.{os.getpid()}."


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, fsync and rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, *chunks: bytes | bytearray, durable: bool = True) -> None:
    """Write ``chunks``, one after the other, to ``path`` through a temp file in the same folder, fsync and
    rename (chunks, so a large artifact and its trailing newline are never copied into one buffer).

    ``durable`` False: no fsync, of the file or its folder, and the rename is ``replace_unflushed``. For a file
    that is safe to lose (a cache, checked when read: a power cut may leave it old, empty or zeroed, never a
    killed process: the rename still puts the whole new file in place or leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if durable:
            os.replace(tmp, path)
        else:
            replace_unflushed(tmp, path, sum(map(len, chunks)))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # A write's error names no file ("No space left on device"): the one that could not be written.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    if durable:
        fsync_dir(path.parent)


class Settling:
    """An artifact written whole to a temp file beside ``path``, its fsync running in a thread of its own (the
    GIL is released while the disk works), so that the stage goes on meanwhile: ``settle`` waits for the fsync
    and renames the file into place (as ``atomic_write_bytes`` ends), ``abandon`` removes it. Until ``settle``
    the file at ``path`` is the last one, whole."""

    def __init__(self, path: Path, *chunks: bytes | bytearray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
        handle = os.fdopen(fd, "wb")
        try:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._start(path, handle, tmp)

    @classmethod
    def written(cls, path: Path, handle: Any, tmp: str) -> Settling:
        """Return the Settling of a file its own writer wrote and flushed to ``tmp`` (beside ``path``) through
        ``handle``, still open (``status_file.Writer``)."""
        settling = cls.__new__(cls)
        settling._start(path, handle, tmp)
        return settling

    def _start(self, path: Path, handle: Any, tmp: str) -> None:
        self.path, self._handle, self._tmp = path, handle, tmp
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._sync, name="artifact fsync", daemon=True)
        self._thread.start()

    def _sync(self) -> None:
        try:
            os.fsync(self._handle.fileno())
        except BaseException as exc:  # raised by ``settle``
            self._error = exc

    def settle(self) -> None:
        """Wait for the fsync and rename the file over ``path``; raise what the fsync or the rename raised (the
        temp file is then removed and ``path`` is as it was)."""
        try:
            self._thread.join()
            self._handle.close()
            if self._error is not None:
                raise self._error
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abandon()
            raise
        fsync_dir(self.path.parent)

    def abandon(self) -> None:
        """Wait for the fsync and remove the temp file, leaving ``path`` as it was."""
        self._thread.join()
        with contextlib.suppress(OSError):
            self._handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


# renameat2(2)'s flag that swaps two names in one step (Linux 3.15; ext4, xfs, btrfs, tmpfs and more).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# The C library's renameat2 once looked up (None: not there, then os.replace is used); see ``replace_unflushed``.
_renameat2: Any = None
_renameat2_looked_up = False
# Below this size the flush a rename starts costs less than looking renameat2 up (ctypes: ~2 ms, once).
EXCHANGE_MIN_BYTES = 256 * 1024


def replace_unflushed(tmp: str, path: Path, size: int | None = None) -> None:
    """Put the file ``tmp`` (just written, not fsynced) in place of ``path`` in one step, as ``os.replace``
    does, without making the file system write ``tmp``'s data out first; ``tmp`` is gone after.

    Why not os.replace: on ext4 (the default auto_da_alloc) a rename over an existing file makes the kernel
    allocate and start writing the renamed file's delayed data at once, so that a power cut cannot leave the
    replaced file empty: for a cache of megabytes, milliseconds in the rename, most of what an fsync would
    cost, for a file that is checked when read and needs no such care. Swapping the two names
    (``renameat2(RENAME_EXCHANGE)``) is not a rename over a file: the data is written in the background
    later, and the old content, now under ``tmp``'s name, is unlinked. A killed process leaves ``path``
    whole, the old file or the new one, and at worst a temp file that the next cycle removes. Where there is
    no such call (not Linux, no renameat2 in the C library, a file system that refuses it, no ``path`` yet),
    it is ``os.replace``; so it is for a file of ``size`` below ``EXCHANGE_MIN_BYTES`` (a flush of a few pages
    costs less than the import of ctypes, which a warm cycle, writing only such files, would pay)."""
    small = size is not None and size < EXCHANGE_MIN_BYTES
    exchange = _exchange_call() if os.name == "posix" and not small else None
    if exchange is not None:
        import ctypes  # loaded already by ``_exchange_call``

        if exchange(_AT_FDCWD, os.fsencode(tmp), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE) == 0:
            with contextlib.suppress(OSError):  # left for the next cycle's removal of temp files
                os.unlink(tmp)
            return
        logger.debug("%s: renameat2 exchange refused (errno %d); renamed over it", path, ctypes.get_errno())
    os.replace(tmp, path)


def _exchange_call() -> Any:
    """Return the C library's ``renameat2``, or None where there is none (looked up once: ctypes costs ~2 ms
    to import, paid by the first cache written)."""
    global _renameat2, _renameat2_looked_up
    if not _renameat2_looked_up:
        _renameat2_looked_up = True
        try:
            import ctypes

            call = ctypes.CDLL(None, use_errno=True).renameat2
            call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
            call.restype = ctypes.c_int
            _renameat2 = call
        except (ImportError, OSError, AttributeError):
            _renameat2 = None
    return _renameat2


def remove_stale_temp_files(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temp files (``.NAME.*.tmp``) of writes to the files ``names`` in ``folder`` that no live
    writer owns; return the paths removed.

    A killed write leaves its temp file behind (no cleanup runs on SIGKILL). One whose name carries the pid
    of another running process is kept: that process (the --scheduler loop, a cycle refused by the lock
    recording its skip) may be about to rename it. One with this process's pid is removed, so call this only
    when this process has no write in progress (at the start of a cycle). Names without a pid (written by
    an older version) are removed.
    """
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    wanted = set(names)
    removed = []
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        target = next((n for n in wanted if name.startswith(f".{n}.")), None)
        if target is None:
            continue
        owner = name[len(target) + 2 : -len(".tmp")].split(".")[0]
        if owner.isdigit() and int(owner) != os.getpid() and lock_module.pid_alive(int(owner)):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # its writer renamed it just now
        except OSError as exc:
            logger.warning("%s: cannot remove a leftover temp file: %s", entry.path, exc.strerror or exc)
            continue
        removed.append(Path(entry.path))
    return removed


def fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries to disk (a no-op on Windows); inside :func:`deferred_syncs`, at its end."""
    # The rename is durable only once the directory entry is on disk; Windows cannot open directories.
    if os.name == "nt":
        return
    if _deferred is not None:
        _deferred.folders[str(folder)] = None
        return
    _fsync_path(str(folder))


def fsync_appended(path: Path, fd: int) -> None:
    """Flush the lines just appended to the file ``path`` (open as ``fd``) to disk; inside
    :func:`deferred_syncs`, at its end (not on Windows, where a file must be open for writing to be flushed)."""
    if _deferred is not None and os.name != "nt":
        _deferred.files[str(path)] = None
        return
    os.fsync(fd)


class _Deferred:
    """The folders and appended files whose fsync waits for the end of :func:`deferred_syncs` (ordered sets)."""

    def __init__(self) -> None:
        self.files: dict[str, None] = {}
        self.folders: dict[str, None] = {}


_deferred: _Deferred | None = None


@contextlib.contextmanager
def deferred_syncs() -> Iterator[None]:
    """Inside the block, flush each folder that had a file renamed into it, and each file appended to in place
    (the structured log), once at the end instead of after every write; a nested block leaves it to the outer.

    What waits is only what a power cut (not a killed process: its writes are in the kernel already) could
    lose: every file written by ``atomic_write_bytes`` still has its content flushed before it is renamed
    into place, so after a power cut each one is its new content or its old one, whole, never torn. What the
    wait changes is how many of a cycle's renames and log lines a power cut can undo: those of this cycle up
    to the end of the block, instead of the one in progress. A cycle writes each state file whole on its own
    and its readers accept any of its versions (intake.json's log offset past the log's end is read as a
    replaced log), so an older version is as good as a cycle killed earlier. A cycle writes a dozen files
    into two or three folders: this saves a dozen or more fsyncs, each a disk flush. Those left for the end
    are flushed all at once (``_flush_all``)."""
    global _deferred
    if _deferred is not None:
        yield
        return
    _deferred = pending = _Deferred()
    try:
        yield
    finally:
        _deferred = None
        _flush_all([*pending.files, *pending.folders])


def deferred_paths() -> tuple[list[str], list[str]]:
    """Return the files and the folders whose flush waits for the end of the open :func:`deferred_syncs` block
    (both empty outside one): what a stage run in another process hands back with its outcome."""
    if _deferred is None:
        return [], []
    return list(_deferred.files), list(_deferred.folders)


def defer_paths(files: list[str], folders: list[str]) -> None:
    """Add ``files`` and ``folders`` (from :func:`deferred_paths` of another process) to what the open
    :func:`deferred_syncs` block flushes at its end; outside one, flush them now."""
    if _deferred is None:
        _flush_all([*files, *folders])
        return
    _deferred.files.update(dict.fromkeys(files))
    _deferred.folders.update(dict.fromkeys(folders))


def _flush_all(paths: list[str]) -> None:
    """Flush each of ``paths`` (files and folders) to disk, each in a thread of its own, and return when all are
    done; one that cannot be flushed is logged as an error.

    One after the other, each fsync waits for a journal commit of its own (milliseconds each, the end of every
    cycle); issued together, the file system commits them in one."""

    def flush(path: str) -> None:
        try:
            _fsync_path(path)
        except OSError as exc:
            logger.error("%s: cannot flush to disk: %s", path, exc.strerror or exc)

    threads = [threading.Thread(target=flush, args=(path,), name="fsync") for path in paths[1:]]
    for thread in threads:
        thread.start()
    try:
        if paths:
            flush(paths[0])
    finally:
        for thread in threads:
            thread.join()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(
    path: Path, data: Any, schema_name: str, indent: int | None = 2, durable: bool = True, hand_over: bool = False
) -> None:
    """Validate ``data`` against ``schema_name`` and write it atomically to ``path`` (see ``dumps``);
    ``durable`` False for a file safe to lose (see ``atomic_write_bytes``). With ``hand_over``, ``data`` is kept
    for the next ``read`` of ``path`` in this process that takes a handed-over document (the writer must not
    change it after)."""
    validate(data, schema_name, f"{path} (about to be written)")
    encoded = _orjson_bytes(data, indent)
    if encoded is None:
        atomic_write_bytes(path, dumps(data, indent).encode("utf-8"), durable=durable)
    else:
        atomic_write_bytes(path, encoded, b"\n", durable=durable)
    if hand_over:
        _handed[path] = (file_identity.of(path), schema_name, data)
    else:
        _handed.pop(path, None)  # one handed over before is not the file now


# Documents written with ``hand_over``, by path: the file's identity just after the write, its schema, the
# document. A later stage of the same process that reads the file (the scan reads intake.json) takes the
# document itself: what it would parse from the file, validated already, without reading, parsing and checking
# a megabyte again. Taken once (``read``), so it is not held for the rest of the cycle.
_handed: dict[Path, tuple[list[int] | None, str, Any]] = {}


def part_text(instance: Any, schema_name: str, definition: str, source: str) -> str:
    """Validate ``instance`` against ``$defs/definition`` of ``schema_name`` and return its compact canonical
    text, for ``write_assembled``. Raise ArtifactError naming ``source`` when it is not valid."""
    validate(instance, schema_name, source, definition)
    # Just validated, so plain JSON data: the cycle check has nothing to find.
    return dumps(instance, indent=None)[:-1]


def write_assembled(path: Path, head: dict[str, Any], key: str, parts: list[str], schema_name: str) -> str:
    """Write the artifact ``head`` whose list ``key`` holds the items ``parts`` (texts from ``part_text``,
    validated there); return the sha256 of the text written.

    ``head`` is validated with that list empty; the schema must state the list's items as the definition
    ``part_text`` checked them against, so the whole is valid when head and parts are. Large artifacts are
    made this way so that each item is validated and encoded where it is made (a worker process) or kept as
    it was, and the document is never walked as a whole. The text is what ``dumps(document, indent=None)``
    gives with each item on a line of its own, written atomically.
    """
    before, after = _split_head(path, head, key, schema_name)
    # One item per line (still one JSON document): readers can take the items one at a time (``iter_assembled``)
    # instead of holding a document of many megabytes in memory.
    body = ("\n" + ",\n".join(parts) + "\n").encode("utf-8") if parts else b""
    atomic_write_bytes(path, before, body, after)
    digest = hashlib.sha256(before)
    digest.update(body)
    digest.update(after)
    return digest.hexdigest()


class AssembledWriter:
    """Writes what ``write_assembled`` writes, its items taken one at a time as they are made, so that the
    writer never holds them all: they go to a temp file beside ``path`` at once, and ``finish`` writes the
    document (head, items, rest of the head) through a second temp file, fsync and rename, as every artifact.

    Use it as a context manager: leaving it without ``finish`` (an exception) removes the temp files and
    leaves ``path`` as it was.
    """

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._body_path = temp_beside(path)
        self._body = os.fdopen(fd, "w+b", buffering=1 << 20)

    def add(self, item: bytes) -> None:
        """Append one item: its compact canonical JSON text (``part_text``, encoded UTF-8), validated."""
        self.add_many(item, 1)

    def add_many(self, items: bytes | memoryview, count: int) -> None:
        """Append ``count`` items whose texts, validated, are ``items`` joined by ``,\n``."""
        self._body.write(b",\n" if self.count else b"\n")
        self._body.write(items)
        self.count += count

    def finish(self, head: dict[str, Any], schema_name: str) -> str:
        """Validate ``head`` (its list ``key`` empty) and write the document; return the sha256 of its bytes."""
        before, after = _split_head(self.path, head, self.key, schema_name)
        digest = hashlib.sha256(before)
        fd, tmp = temp_beside(self.path)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(before)
                self._body.seek(0)
                while chunk := self._body.read(1 << 20):
                    digest.update(chunk)
                    handle.write(chunk)
                closing = b"\n" + after if self.count else after
                digest.update(closing)
                handle.write(closing)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        finally:
            self.close()
        fsync_dir(self.path.parent)
        return digest.hexdigest()

    def close(self) -> None:
        """Remove the temp file of the items (``finish`` calls it; so does leaving the context)."""
        if not self._body.closed:
            self._body.close()
        with contextlib.suppress(OSError):
            os.unlink(self._body_path)

    def __enter__(self) -> AssembledWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _split_head(path: Path, head: dict[str, Any], key: str, schema_name: str) -> tuple[bytes, bytes]:
    """Validate ``head`` (its list ``key`` empty) and return its text up to the list's opening bracket and from
    its closing one, encoded: what ``write_assembled`` writes around the items."""
    if head.get(key) != []:
        raise ValueError(f"write_assembled: {key!r} must be an empty list in the head")
    validate(head, schema_name, f"{path} (about to be written)")
    marker = json.dumps(key, ensure_ascii=False) + ":[]"
    text = dumps(head, indent=None)
    # Strings escape their quotes, so the marker can only be a key with an empty list: it must be this one.
    if text.count(marker) != 1:
        raise ValueError(f"write_assembled: {key!r} is not a key of the head alone")
    cut = text.index(marker) + len(marker) - 1
    return text[:cut].encode("utf-8"), text[cut:].encode("utf-8")


class HeadFirstWriter:
    """Writes what ``write_assembled`` writes when the head is known before the items: straight into the temp
    file that is renamed into place (no file of items to copy afterwards), hashing the bytes as they are
    written (no second read). ``finish`` fsyncs and renames, as every artifact.

    ``add`` takes the item's text, or ``add_many`` a run of items already joined as in the file (each
    ``,\n``-separated): a run copied from the last file whole. Use it as a context manager: leaving it
    without ``finish`` removes the temp file and leaves ``path`` as it was.
    """

    def __init__(self, path: Path, key: str, head: dict[str, Any], schema_name: str) -> None:
        self.path = path
        self.count = 0
        before, self._after = _split_head(path, head, key, schema_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = temp_beside(path)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._digest = hashlib.sha256(before)
        self._file.write(before)

    def add(self, item: bytes) -> None:
        """Append one item: its compact canonical JSON text (``part_text``, encoded UTF-8), validated."""
        self.add_many(item, 1)

    def add_many(self, items: bytes | memoryview, count: int) -> None:
        """Append ``count`` items whose texts, validated, are ``items`` joined by ``,\n``."""
        separator = b",\n" if self.count else b"\n"
        self._digest.update(separator)
        self._file.write(separator)
        self._digest.update(items)
        self._file.write(items)
        self.count += count

    def finish(self) -> str:
        """Write the rest of the head, fsync and rename into place; return the sha256 of the bytes written."""
        closing = b"\n" + self._after if self.count else self._after
        self._digest.update(closing)
        try:
            self._file.write(closing)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
            self._tmp = ""  # renamed into place: nothing left to remove
        finally:
            self.close()
        fsync_dir(self.path.parent)
        return self._digest.hexdigest()

    def close(self) -> None:
        """Remove the temp file, unless ``finish`` renamed it (leaving the context calls it)."""
        if not self._file.closed:
            self._file.close()
        if self._tmp:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)

    def __enter__(self) -> HeadFirstWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Assembled:
    """An artifact written by ``write_assembled``, read one list item at a time.

    ``head`` is the document without the list (validated, the list empty); ``items()`` yields the list's items
    in order, each validated against the definition ``write_assembled``'s parts were checked with. A file in
    another layout (edited by hand, written by an older version) is read whole and validated, and gives the
    same answers; broken content raises ArtifactError naming the file (and the line).
    """

    def __init__(self, path: Path, key: str, schema_name: str, definition: str) -> None:
        self.path, self.key, self.schema_name, self.definition = path, key, schema_name, definition
        self._whole: list[Any] | None = None
        self._body_at = 0
        opener = (json.dumps(key, ensure_ascii=False) + ":[").encode("utf-8")
        try:
            with path.open("rb") as handle:
                first = handle.readline()
                self._body_at = handle.tell()
                tail = last_line(handle)
        except FileNotFoundError:
            raise ArtifactError(f"{path}: missing (run the stage that writes it first)") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: unreadable: {exc.strerror or exc}") from None
        if first.rstrip(b"\n").endswith(opener) and tail.startswith(b"]") and first.endswith(b"\n"):
            try:
                head = orjson.loads(first.rstrip(b"\n") + tail)
            except orjson.JSONDecodeError as exc:
                raise ArtifactError(f"{path}: not valid JSON around its list {key!r} ({exc})") from None
            validate(head, schema_name, str(path))
            self.head: dict[str, Any] = head
        else:
            data = read(path, schema_name)
            self._whole = data[key]
            self.head = {**data, key: []}

    def items(self) -> Iterator[Any]:
        """Yield the list's items, one line read and validated at a time."""
        if self._whole is not None:
            yield from self._whole
            return
        with self.path.open("rb") as handle:
            handle.seek(self._body_at)
            lines = enumerate(handle, start=2)
            closed = yield from item_lines(lines, self.path, self.schema_name, self.definition)
        if not closed:
            raise ArtifactError(f"{self.path}: ends inside its list {self.key!r} (a torn write?)")


def item_lines(
    lines: Iterable[tuple[int, bytes]], path: Path, schema_name: str, definition: str
) -> Generator[Any, None, bool]:
    """Yield the items of numbered ``lines`` (one item per line, a comma after all but the last), each
    validated against ``$defs/definition`` of ``schema_name``, up to the line that closes the list; return
    whether that line came (False: the lines ended first, a torn file). Errors name ``path`` and the line."""
    for number, line in lines:
        if line.startswith(b"]"):
            return True
        yield item_line(line.rstrip(b"\n").removesuffix(b","), number, path, schema_name, definition)
    return False


def item_line(body: bytes, number: int, path: Path, schema_name: str, definition: str) -> Any:
    """Return the list item on line ``number`` of ``path`` (``body``: the line without its comma and newline),
    validated against ``$defs/definition`` of ``schema_name``; raise ArtifactError naming the file and line
    when it is not valid JSON or not such an item."""
    try:
        item = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: line {number} is not valid JSON ({exc})") from None
    # The yes/no check first: the full validator (which words the errors) is slower by far.
    if not fast_validator(schema_name, definition).is_valid(item):
        validate(item, schema_name, f"{path} (line {number})", definition)
    return item


def last_line(handle: Any, window: int = 1 << 16) -> bytes:
    """Return the last line of the binary file ``handle`` (without its newline), read back from the end
    ``window`` bytes at a time until its start is in view; the whole file when it holds one line."""
    end = handle.seek(0, os.SEEK_END)
    start, chunk = end, b""
    while start > 0 and b"\n" not in chunk.rstrip(b"\n"):
        start = max(0, start - window)
        handle.seek(start)
        chunk = handle.read(end - start)
    chunk = chunk.rstrip(b"\n")
    return chunk[chunk.rfind(b"\n") + 1 :]


def write_if_changed(
    path: Path, data: dict[str, Any], schema_name: str, volatile: Iterable[str] = (), indent: int | None = 2
) -> bool:
    """Write ``data`` to ``path`` unless the file already holds the same content; return whether it wrote.

    Keys in ``volatile`` (timestamps) are left out of the comparison, so an unchanged install keeps the file
    and its mtime as they are: the file is compared with the text ``data`` would be written as, with the
    file's own volatile values. A missing or broken existing file (or one in another layout) is replaced.
    """
    try:
        if _same_but_volatile(path.read_bytes(), data, volatile, indent):
            return False
    except OSError:
        pass
    try:
        existing_text = path.read_text(encoding="utf-8")
        existing = loads(existing_text)
    except (OSError, ValueError):
        existing = None
    if isinstance(existing, dict):
        candidate = dict(data)
        for key in volatile:
            if key in existing:
                candidate[key] = existing[key]
            else:
                candidate.pop(key, None)
        if dumps(candidate, indent) == existing_text:
            return False
    write(path, data, schema_name, indent)
    return True


def _same_but_volatile(existing: bytes, data: dict[str, Any], volatile: Iterable[str], indent: int | None) -> bool:
    """Return True when ``existing`` is exactly the text ``data`` would be written as but for the values of its
    ``volatile`` keys (each one JSON value, spelled as it would be written); False when that is not so or
    cannot be told this way (``write_if_changed`` then compares as it always did).

    The model cache of a large install is megabytes: parsing the file to take its timestamp costs more time
    and memory than the walk that made the new one. Instead the new text is encoded once with a marker in
    place of each volatile value, and the file must hold the same text around those places.
    """
    keys = [key for key in volatile if key in data]
    marked = dict(data)
    for key in keys:
        marked[key] = f"\0{key}\0volatile"
    encoded = _orjson_bytes(marked, indent)
    if encoded is None:
        return False
    markers = [orjson.dumps(marked[key]) for key in keys]
    if any(encoded.count(marker) != 1 for marker in markers):
        return False
    # The text around the markers, in the order they stand in it.
    literals, start = [], 0
    for at, marker in sorted((encoded.index(marker), marker) for marker in markers):
        literals.append(encoded[start:at])
        start = at + len(marker)
    literals.append(encoded[start:] + b"\n")
    if not existing.startswith(literals[0]) or not existing.endswith(literals[-1]):
        return False
    at = len(literals[0])
    for index, literal in enumerate(literals[1:], start=1):
        end = len(existing) - len(literal) if index == len(literals) - 1 else existing.find(literal, at)
        if end < at:
            return False
        value = existing[at:end]
        try:
            if orjson.dumps(orjson.loads(value), option=orjson.OPT_SORT_KEYS) != value:
                return False  # not one value, or not spelled as it would be written
        except orjson.JSONDecodeError:
            return False
        at = end + len(literal)
    return at == len(existing)


def append_jsonl(path: Path, records: Iterable[dict[str, Any]], schema_name: str) -> int:
    """Validate and append ``records`` as JSON lines to ``path``; return how many were written.

    Whatever the moment a writer is killed, a reader sees whole lines only: the file is copied to a temp
    file, the lines appended there, fsynced and renamed over ``path`` (see ``_append_whole``). A line torn
    by an earlier version's killed write (no trailing newline) is cut off in the copy.
    """
    lines = []
    for record in records:
        validate(record, schema_name, f"{path} (record about to be appended)")
        lines.append(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    # Copy-and-rename is a read-modify-write: two appenders at once (a cycle refused by the lock records
    # its skip while the holder records its end) would each rename their own copy and lose the other's
    # line. A short OS lock of its own (freed by the kernel if its holder dies) makes them take turns.
    with lock_module.exclusive(path.with_name(f".{path.name}.lock")):
        _append_whole(path, "".join(lines).encode("utf-8"))
    return len(lines)


def _append_whole(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` so that no reader, at any moment, sees part of it.

    Why not write() with O_APPEND: a write to a regular file is not atomic against a kill. Linux copies it
    into the page cache a page at a time and checks for a fatal signal between pages, so a SIGKILL in the
    middle of a write longer than a page (intake's batch of acknowledgments) leaves a short write, a torn
    last line; POSIX promises atomic writes for pipes (PIPE_BUF) only, and Windows for nothing. What is
    atomic on both is replacing a directory entry: rename(2) on POSIX, and os.replace (MoveFileEx with
    MOVEFILE_REPLACE_EXISTING, one metadata operation on NTFS) on Windows. So the old content and the new
    lines go to a temp file beside it (same file system), fsynced, which then replaces ``path``: a kill
    leaves the old file and a temp file (removed by the next cycle), never part of a line. The copy costs
    the file's size per append (a few MB for tens of thousands of acknowledgments, once per cycle). Offsets
    into the file (intake.json's ``log_size``) stay valid: the old content is copied byte for byte.
    """
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "r+b") as handle:
            try:
                with open(path, "rb") as old:
                    while chunk := old.read(1 << 20):
                        handle.write(chunk)
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # readable by whom it was before, not 0600
            except FileNotFoundError:
                pass
            _cut_torn_tail(handle, path)
            handle.seek(0, os.SEEK_END)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if not _replace(tmp, path):
            # Windows only: a reader keeps the file open without FILE_SHARE_DELETE, so it cannot be
            # replaced now. Appending in place there is the best left (torn only if killed this instant).
            os.unlink(tmp)
            with open(path, "a+b") as handle:
                _cut_torn_tail(handle, path)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _replace(tmp: str, path: Path) -> bool:
    """Rename ``tmp`` over ``path``; return False when Windows refused it for a while (file in use)."""
    for attempt in range(10):
        try:
            os.replace(tmp, path)
            return True
        except PermissionError:
            if os.name != "nt":
                raise
            time.sleep(0.02 * (attempt + 1))
    return False


def _cut_torn_tail(handle: Any, path: Path) -> None:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    # Walk back to the last newline; everything after it is a partial record from a killed write.
    pos = size - 1
    chunk = 4096
    while pos > 0:
        start = max(0, pos - chunk)
        handle.seek(start)
        block = handle.read(pos - start)
        idx = block.rfind(b"\n")
        if idx != -1:
            handle.truncate(start + idx + 1)
            logger.warning("%s: dropped a torn last line left by an interrupted write", path)
            return
        pos = start
    handle.truncate(0)


def read_jsonl(path: Path, schema_name: str, offset: int = 0) -> Iterator[dict[str, Any]]:
    """Yield the valid records of the JSON-lines file at ``path`` from byte ``offset`` (none if no file).

    A torn or invalid line is logged with its file and line number and skipped: one bad line must not hide
    the rest of the history.
    """
    if not path.exists():
        return
    with open(path, "rb") as handle:
        handle.seek(offset)
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            where = f"{path}: line {number}" if offset == 0 else f"{path}: line {number} after byte {offset}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s is not valid JSON; skipped", where)
                continue
            errors = schema_errors(record, schema_name, where)
            if errors:
                logger.warning("%s; skipped", errors[0])
                continue
            yield record
