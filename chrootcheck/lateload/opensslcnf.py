"""OpenSSL's configuration file format, read the way libcrypto reads it (crypto/conf/conf_def.c).

Two layers:

* ``parse_file`` / ``parse_text``: sections, ``key = value``, quoting and escapes, ``$var`` /
  ``${sect::var}`` / ``$(var)`` expansion (``ENV::`` reads the given environment), line
  continuations, ``.include`` (files and folders, with or without ``=``) and ``.pragma``
  (``dollarid``, ``abspath``, ``includedir``). Every file the parse touched or named is listed.
* ``load_modules``: ``openssl_conf`` -> the init section -> ``engines``, ``providers``,
  ``random`` and any other module, the parts that make libcrypto load files.

Never raises on bad input: problems are collected with their file and line. OpenSSL itself
rejects the whole file on a syntax error (nothing in it takes effect, silently by default),
so a problem here means "OpenSSL would ignore this config".
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from chrootcheck.jail.fs import read_regular

DEFAULT_SECTION = "default"
# crypto/conf/conf_def.c: MAX_CONF_VALUE_LENGTH, the cap on an expanded value.
MAX_VALUE_LENGTH = 65536
# A defence against include cycles; OpenSSL has none for files (a cycle exhausts memory).
MAX_INCLUDE_DEPTH = 16
MAX_FILE_SIZE = 4 * 1024 * 1024
# Providers compiled into libcrypto: activating them loads no file.
BUILTIN_PROVIDERS = frozenset({"default", "base", "null"})
# Engines compiled into libcrypto 1.1/3.x (others come from ENGINESDIR/<id>.so).
BUILTIN_ENGINES = frozenset({"dynamic", "rdrand", "devcrypto", "openssl", "padlock-builtin"})

# conf_def.c's name characters: letters, digits and the punctuation it accepts in names.
_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_!.%&*+,/;?@^~|-"
)
# Characters of a variable name in $var (IS_ALNUM in the default table: letters, digits, '_').
_VAR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIRECTIVE = re.compile(r"^\.(include|pragma)(?:\s*=\s*|\s+)(.*)$", re.S)


@dataclass(frozen=True)
class Location:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ConfValue:
    section: str
    name: str
    value: str
    where: Location


@dataclass(frozen=True)
class Problem:
    where: Location
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class ConfSource:
    """A file or folder the configuration reads (the main file, an .include)."""

    path: str
    kind: str  # "config", "include", "include-dir"
    exists: bool
    included_from: Location | None = None
    error: str | None = None  # unreadable, not a regular file ...


@dataclass
class Config:
    """The parsed configuration: sections in file order, last assignment wins (as in OpenSSL)."""

    path: str | None = None
    sections: dict[str, dict[str, ConfValue]] = field(default_factory=dict)
    sources: list[ConfSource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def get(self, section: str | None, name: str) -> str | None:
        """_CONF_get_string: the section, then the default section."""
        if section is not None:
            v = self.sections.get(section, {}).get(name)
            if v is not None:
                return v.value
        v = self.sections.get(DEFAULT_SECTION, {}).get(name)
        return v.value if v is not None else None

    def section(self, name: str) -> list[ConfValue] | None:
        s = self.sections.get(name)
        return list(s.values()) if s is not None else None

    def value(self, section: str, name: str) -> ConfValue | None:
        return self.sections.get(section, {}).get(name)


Reader = Callable[[str], bytes]


def read_host_file(path: str) -> bytes:
    """A config file (or p11-kit .module) by its host path, through the one careful reader:
    only a regular file of at most ``MAX_FILE_SIZE`` bytes, never a FIFO (it would block the
    scan) or a device (its driver's open runs), never mapped. Raises OSError with the reason."""
    return read_regular(path, follow=True, limit=MAX_FILE_SIZE)


class _Parser:
    def __init__(self, env: Mapping[str, str], read: Reader, cwd: str) -> None:
        self.env = env
        self.read = read
        self.cwd = cwd
        self.cfg = Config()
        self.section = DEFAULT_SECTION
        self.dollarid = False
        self.abspath = False
        self.includedir: str | None = None
        self.cfg.sections[DEFAULT_SECTION] = {}

    # -- files -----------------------------------------------------------------------------
    def load(
        self, path: str, kind: str, origin: Location | None, depth: int, in_dir: bool = False
    ) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            self.problem(
                origin or Location(path, 0),
                f"includes nested deeper than "
                f"{MAX_INCLUDE_DEPTH}: {path} not read (an include loop?)",
            )
            return
        try:
            st = os.stat(path)
        except OSError as e:
            self.cfg.sources.append(
                ConfSource(path, kind, False, origin, None if e.errno == 2 else _strerror(e))
            )
            return
        if stat.S_ISDIR(st.st_mode) and kind == "include":
            if in_dir:
                # conf_def.c: CONF_R_RECURSIVE_DIRECTORY_INCLUDE
                self.problem(
                    origin or Location(path, 0),
                    f"folder {path} included from an included folder: OpenSSL refuses",
                )
                return
            self.cfg.sources.append(ConfSource(path, "include-dir", True, origin))
            try:
                names = sorted(os.listdir(path))
            except OSError as e:
                self.cfg.sources[-1] = ConfSource(path, "include-dir", True, origin, _strerror(e))
                return
            for name in names:
                # Only *.cnf and *.conf, case-insensitively; no recursion into sub-folders.
                if not name.lower().endswith((".cnf", ".conf")):
                    continue
                full = os.path.join(path, name)
                if os.path.isdir(full):
                    continue
                self.load(full, "include", origin, depth + 1, in_dir=True)
            return
        try:
            data = self.read(path)
        except OSError as e:
            self.cfg.sources.append(ConfSource(path, kind, True, origin, _strerror(e)))
            if kind == "config":
                self.problem(Location(path, 0), f"cannot read: {_strerror(e)}")
            return
        self.cfg.sources.append(ConfSource(path, kind, True, origin))
        self.parse(data.decode("utf-8", "surrogateescape"), path, depth, in_dir)

    # -- lines -----------------------------------------------------------------------------
    def parse(self, text: str, name: str, depth: int = 0, in_dir: bool = False) -> None:
        for lineno, line in _logical_lines(text):
            try:
                self.line(line, Location(name, lineno), depth, in_dir)
            except _LineError as e:
                self.problem(Location(name, lineno), str(e))

    def line(self, raw: str, where: Location, depth: int, in_dir: bool) -> None:
        line = _strip_comment(raw).strip(" \t\r\n")
        if not line:
            return
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                raise _LineError("missing close square bracket")
            name = line[1:end].strip(" \t")
            if not name or any(c not in _NAME_CHARS for c in name):
                raise _LineError(f"bad section name {name!r}")
            self.section = name
            self.cfg.sections.setdefault(name, {})
            return
        m = _DIRECTIVE.match(line)
        if m:
            kind, arg = m.group(1), m.group(2).strip(" \t")
            if kind == "pragma":
                self.pragma(arg)
            else:
                self.include(self.expand(arg), where, depth, in_dir)
            return
        i = 0
        while i < len(line) and line[i] in _NAME_CHARS:
            i += 1
        name = line[:i]
        section = self.section
        if line[i : i + 2] == "::":
            section, i = name, i + 2
            j = i
            while i < len(line) and line[i] in _NAME_CHARS:
                i += 1
            name = line[j:i]
        rest = line[i:].lstrip(" \t")
        if not name:
            raise _LineError(f"bad name in {line[:40]!r}")
        if not rest.startswith("="):
            raise _LineError(f"missing equal sign after {name!r}")
        value = self.expand(rest[1:].strip(" \t"), section)
        values = self.cfg.sections.setdefault(section, {})
        # OpenSSL's lhash replaces a duplicate and drops it from the section's list.
        values.pop(name, None)
        values[name] = ConfValue(section, name, value, where)

    def pragma(self, arg: str) -> None:
        key, sep, val = arg.partition(":")
        key, val = key.strip(" \t"), val.strip(" \t")
        if not sep:
            raise _LineError(f"bad .pragma {arg!r}: expected name:value")
        if key == "dollarid":
            self.dollarid = _pragma_bool(val, key)
        elif key == "abspath":
            self.abspath = _pragma_bool(val, key)
        elif key == "includedir":
            self.includedir = self.expand(val) or None
        # Unknown pragmas are ignored by OpenSSL, for forward compatibility.

    def include(self, path: str, where: Location, depth: int, in_dir: bool) -> None:
        if not path:
            raise _LineError("empty .include")
        if not path.startswith("/"):
            if self.abspath:
                raise _LineError(f".include {path!r} is relative and .pragma abspath is on")
            base = self.includedir or self.env.get("OPENSSL_CONF_INCLUDE")
            # Without a base OpenSSL opens it relative to the process's working folder,
            # which after a chroot is usually the jail's root.
            path = os.path.join(base or self.cwd, path)
        self.load(os.path.normpath(path), "include", where, depth + 1, in_dir)

    # -- values ----------------------------------------------------------------------------
    def expand(self, s: str, section: str | None = None) -> str:
        """str_copy(): quotes, escapes and variable expansion."""
        section = section or self.section
        out: list[str] = []
        i, n = 0, len(s)
        size = 0
        while i < n:
            c = s[i]
            if c in "\"'":
                j = i + 1
                while j < n and s[j] != c:
                    if s[j] == "\\" and j + 1 < n:
                        j += 1
                    out.append(s[j])
                    j += 1
                i = j + 1
            elif c == "\\":
                if i + 1 >= n:
                    break
                out.append({"r": "\r", "n": "\n", "b": "\b", "t": "\t"}.get(s[i + 1], s[i + 1]))
                i += 2
            elif c == "$" and (not self.dollarid or s[i + 1 : i + 2] in ("{", "(")):
                i, text = self.variable(s, i + 1, section)
                size += len(text)
                if size > MAX_VALUE_LENGTH:
                    raise _LineError("variable expansion too long")
                out.append(text)
            else:
                out.append(c)
                i += 1
        return "".join(out)

    def variable(self, s: str, i: int, section: str) -> tuple[int, str]:
        close = {"{": "}", "(": ")"}.get(s[i : i + 1])
        if close:
            i += 1
        j = i
        while j < len(s) and s[j] in _VAR_CHARS:
            j += 1
        sect, name = section, s[i:j]
        if s[j : j + 2] == "::":
            sect, j = name, j + 2
            k = j
            while j < len(s) and s[j] in _VAR_CHARS:
                j += 1
            name = s[k:j]
        if close:
            if s[j : j + 1] != close:
                raise _LineError(f"no close brace in variable reference {s[i - 2 : j + 1]!r}")
            j += 1
        value = self.cfg.get(sect, name)
        if value is None and sect == "ENV":
            value = self.env.get(name)
        if value is None:
            raise _LineError(
                f"variable has no value: ${{{sect}::{name}}}"
                if sect != section
                else f"variable has no value: ${name}"
            )
        return j, value

    def problem(self, where: Location, message: str) -> None:
        self.cfg.problems.append(Problem(where, message))


class _LineError(Exception):
    pass


def _pragma_bool(val: str, key: str) -> bool:
    if val in ("on", "true"):
        return True
    if val in ("off", "false"):
        return False
    raise _LineError(f".pragma {key}:{val}: expected on/off/true/false")


def _strerror(e: OSError) -> str:
    return e.strerror or str(e)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines joined at an unescaped trailing backslash, each with its first line's number."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not buf:
            start = number
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            buf.append(line[:-1])
            continue
        buf.append(line)
        out.append((start, "".join(buf)))
        buf = []
    if buf:
        out.append((start, "".join(buf)))
    return out


def _strip_comment(line: str) -> str:
    """clear_comments(): '#' starts a comment unless quoted or escaped."""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "#":
            return line[:i]
        if c in "\"'":
            j = line.find(c, i + 1)
            while j > 0 and line[j - 1] == "\\":
                j = line.find(c, j + 1)
            if j < 0:
                return line
            i = j + 1
        elif c == "\\":
            i += 2
        else:
            i += 1
    return line


def parse_text(
    text: str,
    name: str = "<text>",
    env: Mapping[str, str] | None = None,
    *,
    cwd: str = "/",
    read: Reader = read_host_file,
) -> Config:
    p = _Parser(env if env is not None else {}, read, cwd)
    p.cfg.path = name
    p.parse(text, name)
    return p.cfg


def parse_file(
    path: str,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str = "/",
    read: Reader = read_host_file,
) -> Config:
    """Parse ``path`` and everything it includes. A missing file gives an empty config whose
    first source says so (OpenSSL's IGNORE_MISSING_FILE)."""
    p = _Parser(env if env is not None else {}, read, cwd)
    p.cfg.path = path
    p.load(path, "config", None, 0)
    return p.cfg


def config_path(env: Mapping[str, str], openssldir: str) -> str:
    """The file libcrypto reads: $OPENSSL_CONF, else OPENSSLDIR/openssl.cnf."""
    return env.get("OPENSSL_CONF") or os.path.join(openssldir, "openssl.cnf")


# -- modules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineConf:
    name: str  # the key in the engines section
    section: str
    engine_id: str
    dynamic_path: str | None
    init: bool  # init = 0 loads the engine but does not initialise it
    default_algorithms: str | None
    ctrls: Mapping[str, str]  # the other keys: control commands such as MODULE_PATH
    where: Location

    @property
    def module_path(self) -> str | None:
        """The PKCS#11 module a pkcs11 engine (libp11) loads: its MODULE_PATH control."""
        for k, v in self.ctrls.items():
            if k.upper() == "MODULE_PATH":
                return v
        return None

    @property
    def replaces_rand(self) -> bool:
        algs = (self.default_algorithms or "").upper().replace(" ", "").split(",")
        return "RAND" in algs or "ALL" in algs


@dataclass(frozen=True)
class ProviderConf:
    name: str
    section: str
    identity: str
    module: str | None
    activate: bool
    params: Mapping[str, str]
    where: Location

    @property
    def pkcs11_module_path(self) -> str | None:
        """pkcs11-provider's module (its ``pkcs11-module-path`` parameter)."""
        return self.params.get("pkcs11-module-path")


@dataclass(frozen=True)
class RandomConf:
    section: str
    settings: Mapping[str, str]  # random, cipher, digest, properties, seed, seed_properties ...
    where: Location


@dataclass(frozen=True)
class OtherModule:
    """A module name libcrypto does not know: it tries ``path`` (else the name) as a DSO."""

    name: str
    section: str
    path: str | None
    where: Location


KNOWN_MODULES = frozenset(
    {
        "engines",
        "providers",
        "random",
        "alg_section",
        "ssl_conf",
        "oid_section",
        "stbl_section",
        "asn1",
    }
)


@dataclass
class Modules:
    init_section: str | None = None
    engines: list[EngineConf] = field(default_factory=list)
    providers: list[ProviderConf] = field(default_factory=list)
    random: RandomConf | None = None
    others: list[OtherModule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def effective(self) -> bool:
        """Whether the config changes what libcrypto loads or how it seeds."""
        return bool(self.engines or self.providers or self.random or self.others)


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("1", "yes", "true", "on", "y")


def load_modules(cfg: Config, appname: str | None = None) -> Modules:
    """CONF_modules_load(): what each module of the init section would do."""
    mods = Modules()
    init = cfg.get(None, appname) if appname else None
    if init is None:
        init = cfg.get(None, "openssl_conf")
    if init is None:
        return mods
    mods.init_section = init
    values = cfg.section(init)
    where0 = cfg.value(DEFAULT_SECTION, "openssl_conf")
    loc0 = where0.where if where0 else Location(cfg.path or "?", 0)
    if values is None:
        mods.problems.append(
            Problem(
                loc0,
                f"openssl_conf names section [{init}], which is "
                "not in the file: no module is loaded",
            )
        )
        return mods
    for v in values:
        # module_run(): the module's name is the key up to its last '.' (engines.1 = engines).
        module = v.name.rsplit(".", 1)[0] if "." in v.name else v.name
        if module == "engines":
            _engines(cfg, v, mods)
        elif module == "providers":
            _providers(cfg, v, mods)
        elif module == "random":
            sect = cfg.section(v.value)
            if sect is None:
                mods.problems.append(Problem(v.where, f"random section [{v.value}] is missing"))
            else:
                mods.random = RandomConf(v.value, {x.name: x.value for x in sect}, v.where)
        elif module not in KNOWN_MODULES:
            path = cfg.value(v.value, "path")
            mods.others.append(OtherModule(module, v.value, path.value if path else None, v.where))
    return mods


def _engines(cfg: Config, v: ConfValue, mods: Modules) -> None:
    sect = cfg.section(v.value)
    if sect is None:
        mods.problems.append(Problem(v.where, f"engines section [{v.value}] is missing"))
        return
    for e in sect:
        body = cfg.section(e.value)
        if body is None:
            mods.problems.append(Problem(e.where, f"engine section [{e.value}] is missing"))
            continue
        engine_id, dynamic_path, default_algs = e.name, None, None
        init = True
        ctrls: dict[str, str] = {}
        for kv in body:
            # eng_cnf.c strips a trailing '.N' suffix so a control can be given twice.
            key = kv.name.rsplit(".", 1)[0] if "." in kv.name else kv.name
            if key == "engine_id":
                engine_id = kv.value
            elif key == "dynamic_path":
                dynamic_path = kv.value
            elif key == "init":
                init = kv.value.strip() != "0"
            elif key == "default_algorithms":
                default_algs = kv.value
            elif key != "soft_load":
                ctrls[key] = kv.value
        mods.engines.append(
            EngineConf(e.name, e.value, engine_id, dynamic_path, init, default_algs, ctrls, e.where)
        )


def _providers(cfg: Config, v: ConfValue, mods: Modules) -> None:
    sect = cfg.section(v.value)
    if sect is None:
        mods.problems.append(Problem(v.where, f"providers section [{v.value}] is missing"))
        return
    for p in sect:
        body = cfg.section(p.value)
        if body is None:
            mods.problems.append(Problem(p.where, f"provider section [{p.value}] is missing"))
            continue
        identity, module, activate = p.name, None, False
        params: dict[str, str] = {}
        for kv in body:
            if kv.name == "identity":
                identity = kv.value
            elif kv.name == "module":
                module = kv.value
            elif kv.name == "activate":
                # 3.0 activates on any value; 3.2+ reads a boolean. "activate = 1" is both.
                activate = _truthy(kv.value) or kv.value.strip() == ""
            elif kv.name != "soft_load":
                params[kv.name] = kv.value
        mods.providers.append(
            ProviderConf(p.name, p.value, identity, module, activate, params, p.where)
        )
