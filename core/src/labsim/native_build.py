"""Builds a labsim plugin's compiled twins (:mod:`labsim.native`): what each plugin's
``setup.py`` hands setuptools as its extension modules, ``native_extensions(plugin_dir)``.

For each module of ``<package>.native.MODULES`` it writes a copy of the source, with the
source's SHA-256 appended, under ``build/native-src/`` and compiles the copies with mypyc. The
extensions are optional: without a C compiler the build warns and installs pure Python, which
gives the same outputs. ``LABSIM_PURE_PYTHON=1`` skips them.

In the copies, an import of another module of ``MODULES`` becomes an import of its twin, so
that twins that build on one another (labsim-vllm's replica layers) are compiled as one. A
module of ``MODULES`` may come from another labsim package, named before a colon
(``"shell": "labsim_llm:engine/replica.py"``): the group then holds its own compiled copy of
that module (the serving engines' replicas compile the replica shell they all share with their
own layers). A
plugin whose twins import other labsim packages names them in ``SIBLINGS``: mypyc reads their
sources from this repository to type those imports, and each twin records the SHA-256 of the
modules it imports from them (``SIBLING_SHA256``).

It needs nothing but the standard library and mypy, so a plugin's build loads it by path
(``runpy.run_path``) without labsim installed: the plugins of this repository do
(``plugins/*/setup.py``); a plugin elsewhere, with labsim among its build requirements, can
``from labsim.native_build import native_extensions``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path


def package_of(plugin: Path) -> Path:
    """The import package under *plugin*'s ``src/``: the one with a ``native/`` subpackage."""
    return next((plugin / "src").glob("*/native/__init__.py")).parent.parent


def native_settings(package: Path) -> dict:
    """``<package>.native``'s ``MODULES`` (and ``SIBLINGS``, if it names any), read without
    importing the package (its dependencies need not be installed at build time)."""
    scope: dict = {"SIBLINGS": []}
    for line in (package / "native" / "__init__.py").read_text().splitlines():
        if line.startswith(("MODULES = ", "SIBLINGS = ")):
            exec(line, scope)
    return scope


def sibling_sources(plugin: Path, packages) -> list[str] | None:
    """The source directories of *packages* (other labsim packages next to *plugin* in the
    repository: ``<dir>/src/<package>``), for mypyc to type the twins' imports of them; None
    if one is missing (a build outside the repository: no twins then)."""
    repo = plugin.parent.parent
    found = []
    for package in packages:
        dirs = sorted({str(p.parent) for p in repo.glob(f"*/src/{package}/__init__.py")}
                      | {str(p.parent) for p in repo.glob(f"*/*/src/{package}/__init__.py")})
        if not dirs:
            return None
        found.append(str(Path(dirs[0]).parent))
    return found


def sibling_digests(source: str, packages, roots) -> dict[str, str]:
    """SHA-256 of each module of the sibling *packages* that *source* imports from (found
    under *roots*, their source directories), by module name: mypyc compiled the twin against
    their types, so a twin is stale when one of them changes (:func:`labsim.native.twin`)."""
    names = re.findall(r"^\s*from ((?:%s)(?:\.\w+)*) import " % "|".join(map(re.escape, packages)),
                       source, flags=re.MULTILINE) if packages else []
    found = {}
    for name in sorted(set(names)):
        for root in roots:
            base = Path(root, *name.split("."))
            path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
            if path is not None:
                found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
                break
    return found


def split_module(package: str, path: str) -> tuple[str, str]:
    """``(package, path under it)`` of a module of ``MODULES``: *path* under *package*, or under
    the package it names before a colon (``"labsim_llm:engine/replica.py"``)."""
    owner, _, relative = path.rpartition(":")
    return (owner or package, relative)


def dotted_name(package: str, path: str) -> str:
    """The import name of the module of ``MODULES`` at *path* of *package*
    (``"labsim_llm:engine/replica.py"`` → ``labsim_llm.engine.replica``)."""
    owner, relative = split_module(package, path)
    return f"{owner}." + relative[:-3].replace("/", ".")


def as_twin_imports(source: str, package: str, modules: dict[str, str]) -> str:
    """*source* with each import of one of the twinned *modules* of *package* made an import
    of its twin (``from labsim_vllm.seq import`` → ``from labsim_vllm.native.seq import``): a
    group's twins then build on one another's compiled classes."""
    for name, relative in modules.items():
        dotted = dotted_name(package, relative)
        source = source.replace(f"from {dotted} import ", f"from {package}.native.{name} import ")
    return source


def _package_source(package: str, roots) -> Path | None:
    """The source directory of import *package* under one of *roots*, else None."""
    return next((Path(root, package) for root in roots if Path(root, package, "__init__.py").is_file()), None)


def native_extensions(plugin: Path) -> list:
    """The mypyc extensions of the plugin in directory *plugin*, or none when they cannot or
    should not be built."""
    if os.environ.get("LABSIM_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    package = package_of(plugin)
    settings = native_settings(package)
    modules = settings["MODULES"]
    siblings = sibling_sources(plugin, settings["SIBLINGS"])
    if siblings is None:
        print(f"{package.name}: compiled twins not built (the sources of {settings['SIBLINGS']} "
              "are not next to it); installing pure Python")
        return []
    # the copies live in a tree of their own, so that they compile as <package>.native.<name>
    # (relative paths: mypyc names the generated C files after them)
    os.chdir(plugin)
    root = Path("build") / "native-src"
    shutil.rmtree(root, ignore_errors=True)
    target = root / package.name / "native"
    target.mkdir(parents=True)
    (root / package.name / "__init__.py").write_text("")
    shutil.copyfile(package / "native" / "__init__.py", target / "__init__.py")
    sources = []
    for name, relative in modules.items():
        owner, path = split_module(package.name, relative)
        where = package if owner == package.name else _package_source(owner, siblings)
        if where is None:
            print(f"{package.name}: compiled twins not built ({relative}: {owner} is not among "
                  f"its SIBLINGS' sources); installing pure Python")
            return []
        source = (where / path).read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        copy = target / f"{name}.py"
        tail = f'\nSOURCE_SHA256 = "{digest}"\n'
        text = as_twin_imports(source.decode(), package.name, modules)
        uses = sibling_digests(text, settings["SIBLINGS"], siblings)
        if uses:
            tail += f"SIBLING_SHA256 = {uses!r}\n"
        copy.write_text(text + tail, encoding="utf-8")
        sources.append(str(copy))
    if siblings:
        os.environ["MYPYPATH"] = os.pathsep.join(siblings)
    try:
        # (the siblings' sources only type the twins' imports: their own type errors are theirs)
        extensions = mypycify([*sources, "--ignore-missing-imports", "--follow-imports=silent"], opt_level="3",
                              target_dir=str(Path("build") / "native-c"))
    except (Exception, SystemExit) as error:           # mypyc exits on a type error it finds
        print(f"{package.name}: compiled twins not built ({error!r}); installing pure Python")
        return []
    for extension in extensions:
        extension.optional = True           # no compiler: warn and install pure Python
    return extensions


__all__ = ["native_extensions"]
