"""Which libcrypto a binary would load, by the dynamic loader's rules, without running it.

``ldd`` may run the program (it sets LD_TRACE_LOADED_OBJECTS and executes it, or its own
interpreter): never used. We read the ELF headers as data: the dynamic section's DT_NEEDED,
DT_RPATH, DT_RUNPATH and DT_FLAGS_1 of the binary and of every library it loads, breadth first
as ld.so does, and search each name as ld.so(8) says:

1. DT_RPATH of the object that needs it, then of its loaders up to the executable, unless
   that object has DT_RUNPATH (RPATH is ignored then);
2. LD_LIBRARY_PATH, only when given (``ld_library_path``): it is the daemon's environment that
   counts, not ours. A daemon started by root is not in secure mode (AT_SECURE is set only for
   set-uid, set-gid or file-capability programs), so it would honour it;
3. DT_RUNPATH of the object that needs it (never its loaders');
4. /etc/ld.so.cache (parsed here; ``ldconfig -p`` would be safe too, but the file is simple),
   unless the object is linked -z nodeflib;
5. the default directories (the multiarch ones Debian's loader searches, then /lib64 or /lib).

``$ORIGIN`` (and ``${ORIGIN}``) is the folder of the object's real path; ``$LIB`` is "lib64" for
64-bit objects, "lib" otherwise. A candidate is taken only if it is an ELF file of the same
class and machine (ld.so skips the others). /etc/ld.so.preload and LD_PRELOAD are not
followed. Without libcrypto in the tree, the binary's own bytes are searched for OpenSSL's
version string: "linked statically".

Only the host's file system is read (the daemon loads its libraries before any chroot); files
are opened O_NONBLOCK, must be regular, and are read with pread up to a size cap.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from dataclasses import dataclass, field

from chrootcheck.live import libversion

DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH, DT_FLAGS_1 = (
    0,
    1,
    5,
    10,
    15,
    29,
    0x6FFFFFFB,
)
DF_1_NODEFLIB = 0x800
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
MAX_OBJECTS = 256
_HEADER_CAP = 64 * 1024 * 1024  # program headers and dynamic strings lie well inside this

MULTIARCH = {  # e_machine -> Debian's multiarch triplet folder
    62: "x86_64-linux-gnu",
    183: "aarch64-linux-gnu",
    3: "i386-linux-gnu",
    40: "arm-linux-gnueabihf",
    243: "riscv64-linux-gnu",
    21: "powerpc64le-linux-gnu",
    22: "s390x-linux-gnu",
}


class ElfError(Exception):
    """Not an ELF file we can read (one line)."""


@dataclass(frozen=True)
class ElfInfo:
    path: str
    elf_class: int  # 1: 32-bit, 2: 64-bit
    machine: int
    interpreter: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    nodeflib: bool
    dynamic: bool


@dataclass(frozen=True)
class Loaded:
    name: str  # as in DT_NEEDED
    path: str | None  # the file ld.so would map, None when not found
    via: str  # "DT_RPATH of X", "LD_LIBRARY_PATH", "DT_RUNPATH of X", "ld.so.cache", ...
    needed_by: str


@dataclass(frozen=True)
class BinaryCrypto:
    """The answer for ``--binary PATH``."""

    binary: str
    interpreter: str | None
    libcrypto: str | None  # the libcrypto file it would load
    libcrypto_via: str | None
    libssl: str | None
    version: str | None  # OpenSSL's version string, read from libcrypto's bytes (or the binary's)
    static: bool  # OpenSSL linked into the binary itself
    chain: tuple[Loaded, ...] = ()  # how it gets there: libssl, libcrypto (and who needs them)
    missing: tuple[str, ...] = ()  # DT_NEEDED names not found anywhere
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> str:
        if self.static:
            return f"{self.version} linked statically (no libcrypto among its DT_NEEDED)"
        if self.libcrypto is None:
            return "no libcrypto: neither loaded nor linked statically"
        return f"{self.libcrypto} ({self.version or 'version unknown'}) via {self.libcrypto_via}"


def _open(path: str) -> int:
    try:
        return libversion.open_regular(path)
    except libversion.NotRegular:
        raise ElfError(f"{path}: not a regular file") from None
    except OSError as e:
        raise ElfError(f"{path}: {e.strerror}") from None


def read_elf(path: str) -> ElfInfo:
    fd = _open(path)
    try:
        return _parse(fd, path)
    finally:
        os.close(fd)


def _parse(fd: int, path: str) -> ElfInfo:
    size = os.fstat(fd).st_size

    def read(offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > min(size, _HEADER_CAP):
            raise ElfError(f"{path}: truncated or malformed ELF")
        data = os.pread(fd, n, offset)
        if len(data) != n:
            raise ElfError(f"{path}: truncated ELF")
        return data

    ident = read(0, 16) if size >= 16 else b""
    if ident[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file")
    cls, data_enc = ident[4], ident[5]
    if cls not in (1, 2) or data_enc not in (1, 2):
        raise ElfError(f"{path}: unknown ELF class or byte order")
    end = "<" if data_enc == 1 else ">"
    if cls == 2:
        hdr = struct.unpack(end + "HHIQQQIHHHHHH", read(16, 48))
        phoff, phentsize, phnum = hdr[4], hdr[8], hdr[9]
        ph_fmt, dyn_fmt = end + "IIQQQQQQ", end + "qQ"
    else:
        hdr = struct.unpack(end + "HHIIIIIHHHHHH", read(16, 36))
        phoff, phentsize, phnum = hdr[4], hdr[8], hdr[9]
        ph_fmt, dyn_fmt = end + "IIIIIIII", end + "iI"
    machine = hdr[1]
    loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
    dynamic: tuple[int, int] | None = None
    interp: str | None = None
    for i in range(min(phnum, 4096)):
        raw = read(phoff + i * phentsize, struct.calcsize(ph_fmt))
        f = struct.unpack(ph_fmt, raw)
        if cls == 2:
            p_type, p_offset, p_vaddr, p_filesz = f[0], f[2], f[3], f[5]
        else:
            p_type, p_offset, p_vaddr, p_filesz = f[0], f[1], f[2], f[4]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_INTERP:
            interp = read(p_offset, min(p_filesz, 4096)).split(b"\0")[0].decode("utf-8", "replace")
    if dynamic is None:
        return ElfInfo(path, cls, machine, interp, (), (), (), False, False)

    entries: list[tuple[int, int]] = []
    step = struct.calcsize(dyn_fmt)
    for off in range(dynamic[0], dynamic[0] + min(dynamic[1], step * 65536), step):
        tag, value = struct.unpack(dyn_fmt, read(off, step))
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == DT_STRTAB), None)
    strsz = next((v for t, v in entries if t == DT_STRSZ), 0)
    if strtab is None:
        raise ElfError(f"{path}: a dynamic section without a string table")
    str_off = next((o + strtab - va for va, o, sz in loads if va <= strtab < va + sz), None)
    if str_off is None:
        raise ElfError(f"{path}: the dynamic string table lies outside every segment")
    strings = read(str_off, min(strsz, 1 << 20))

    def string(index: int) -> str:
        if index >= len(strings):
            raise ElfError(f"{path}: a dynamic string out of bounds")
        return strings[index:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")

    def paths(tag: int) -> tuple[str, ...]:
        out: list[str] = []
        for t, v in entries:
            if t == tag:
                out.extend(p for p in string(v).split(":"))
        return tuple(out)

    flags_1 = next((v for t, v in entries if t == DT_FLAGS_1), 0)
    return ElfInfo(
        path=path,
        elf_class=cls,
        machine=machine,
        interpreter=interp,
        needed=tuple(string(v) for t, v in entries if t == DT_NEEDED),
        rpath=paths(DT_RPATH),
        runpath=paths(DT_RUNPATH),
        nodeflib=bool(flags_1 & DF_1_NODEFLIB),
        dynamic=True,
    )


# --- /etc/ld.so.cache ---------------------------------------------------------------------

_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"


def read_ld_cache(path: str = "/etc/ld.so.cache") -> list[tuple[str, str]]:
    """(soname, path) in the cache's order (ld.so takes the first that fits); [] if unreadable."""
    try:
        fd = libversion.open_regular(path)
    except OSError:
        return []
    try:
        data = os.pread(fd, 16 * 1024 * 1024, 0)
    finally:
        os.close(fd)
    base = 0
    if data.startswith(_OLD_MAGIC):  # the old format first, the new one after it (aligned)
        (nlibs,) = struct.unpack_from("<I", data, 12)
        base = (16 + nlibs * 12 + 7) & ~7
    if data[base : base + len(_NEW_MAGIC)] != _NEW_MAGIC:
        return []
    nlibs, _len_strings = struct.unpack_from("<II", data, base + 20)
    out: list[tuple[str, str]] = []
    entry = base + 48
    for i in range(nlibs):
        if entry + (i + 1) * 24 > len(data):
            break
        _flags, key, value = struct.unpack_from("<iII", data, entry + i * 24)
        out.append((_cstr(data, key), _cstr(data, value)))
    return out


def _cstr(data: bytes, offset: int) -> str:
    return data[offset : data.find(b"\0", offset)].decode("utf-8", "surrogateescape")


# --- the search ---------------------------------------------------------------------------


def _default_dirs(elf: ElfInfo) -> list[str]:
    dirs: list[str] = []
    triplet = MULTIARCH.get(elf.machine)
    if triplet:
        dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}"]
    if elf.elf_class == 2:
        dirs += ["/lib64", "/usr/lib64"]
    return [*dirs, "/lib", "/usr/lib"]


def _expand(entry: str, obj: ElfInfo) -> str:
    origin = os.path.dirname(os.path.realpath(obj.path))
    lib = "lib64" if obj.elf_class == 2 else "lib"
    for token, value in (
        ("$ORIGIN", origin),
        ("${ORIGIN}", origin),
        ("$LIB", lib),
        ("${LIB}", lib),
    ):
        entry = entry.replace(token, value)
    return entry or "."


class _Resolver:
    def __init__(self, ld_library_path: str | None, cache: list[tuple[str, str]]) -> None:
        self.ld_library_path = [p for p in (ld_library_path or "").split(":") if p]
        self.cache = cache
        self.elves: dict[str, ElfInfo | None] = {}

    def elf(self, path: str) -> ElfInfo | None:
        if path not in self.elves:
            try:
                self.elves[path] = read_elf(path)
            except ElfError:
                self.elves[path] = None
        return self.elves[path]

    def fits(self, path: str, main: ElfInfo) -> bool:
        e = self.elf(path)
        return e is not None and (e.elf_class, e.machine) == (main.elf_class, main.machine)

    def find(
        self, name: str, obj: ElfInfo, loaders: list[ElfInfo], main: ElfInfo
    ) -> tuple[str | None, str]:
        if "/" in name:
            return (name if self.fits(name, main) else None), "a path in DT_NEEDED"
        searches: list[tuple[str, list[str]]] = []
        if not obj.runpath:
            for o in [obj, *loaders]:
                if o.rpath and not o.runpath:
                    label = f"DT_RPATH of {o.path}"
                    searches.append((label, [_expand(p, o) for p in o.rpath]))
        searches.append(("LD_LIBRARY_PATH", self.ld_library_path))
        if obj.runpath:
            searches.append((f"DT_RUNPATH of {obj.path}", [_expand(p, obj) for p in obj.runpath]))
        for label, dirs in searches:
            for d in dirs:
                candidate = os.path.join(d, name)
                if self.fits(candidate, main):
                    return candidate, label
        if not obj.nodeflib:
            for soname, path in self.cache:
                if soname == name and self.fits(path, main):
                    return path, "/etc/ld.so.cache"
            for d in _default_dirs(main):
                candidate = os.path.join(d, name)
                if self.fits(candidate, main):
                    return candidate, f"the default path {d}"
        return None, "not found"


def resolve_binary(path: str, *, ld_library_path: str | None = None) -> BinaryCrypto:
    """What ``path`` would load for OpenSSL (ElfError with one line if it is not an ELF file)."""
    main = read_elf(path)
    resolver = _Resolver(ld_library_path, read_ld_cache())
    resolver.elves[path] = main
    notes: list[str] = []
    if not main.dynamic:
        notes.append("a static executable: it loads no library")
    # Breadth first, as ld.so loads: each queue item is (object, its chain of loaders).
    queue: deque[tuple[ElfInfo, list[ElfInfo]]] = deque([(main, [])])
    loaded: dict[str, Loaded] = {}
    missing: list[str] = []
    while queue and len(loaded) < MAX_OBJECTS:
        obj, loaders = queue.popleft()
        for name in obj.needed:
            if name in loaded or name in missing:
                continue  # ld.so matches an already loaded soname and does not search again
            found, via = resolver.find(name, obj, loaders, main)
            loaded[name] = Loaded(name, found, via, obj.path)
            if found is None:
                missing.append(name)
                continue
            child = resolver.elf(found)
            if child is not None:
                queue.append((child, [obj, *loaders]))
    crypto = next((lo for n, lo in loaded.items() if n.startswith("libcrypto")), None)
    ssl = next((lo for n, lo in loaded.items() if n.startswith("libssl")), None)
    chain = tuple(lo for lo in (ssl, crypto) if lo is not None)
    version: str | None = None
    static = False
    if crypto is not None and crypto.path is not None:
        version = _version(crypto.path)
    elif crypto is None:
        version = _version(path)
        static = version is not None
    return BinaryCrypto(
        binary=path,
        interpreter=main.interpreter,
        libcrypto=crypto.path if crypto else None,
        libcrypto_via=crypto.via if crypto else None,
        libssl=ssl.path if ssl else None,
        version=version,
        static=static,
        chain=chain,
        missing=tuple(missing),
        notes=tuple(notes),
    )


def _version(path: str) -> str | None:
    try:
        return libversion.version_of(path)
    except OSError:
        return None
