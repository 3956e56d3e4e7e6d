"""Build this plugin with compiled twins of its hottest modules (``<package>.native``, see
:mod:`labsim.native`). The same file builds every labsim plugin that ships twins.

Everything about the package is in ``pyproject.toml``; this file only adds the extension
modules. For each module of ``<package>.native.MODULES`` it writes a copy of the source,
with the source's SHA-256 appended, under ``build/native-src/`` and compiles the copies with
mypyc. The extensions are optional: without a C compiler the build warns and installs pure
Python, which gives the same outputs. ``LABSIM_PURE_PYTHON=1`` skips them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
#: the import package: the one under src/ with a native/ subpackage
PACKAGE = next((HERE / "src").glob("*/native/__init__.py")).parent.parent


def native_modules() -> dict[str, str]:
    """``<package>.native.MODULES``, read without importing the package (its dependencies
    need not be installed at build time)."""
    scope: dict = {}
    for line in (PACKAGE / "native" / "__init__.py").read_text().splitlines():
        if line.startswith("MODULES = "):
            exec(line, scope)
    return scope["MODULES"]


def native_extensions() -> list:
    """The mypyc extensions, or none when they cannot or should not be built."""
    if os.environ.get("LABSIM_PURE_PYTHON", "") not in ("", "0"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # the copies live in a tree of their own, so that they compile as <package>.native.<name>
    # (relative paths: mypyc names the generated C files after them)
    os.chdir(HERE)
    root = Path("build") / "native-src"
    shutil.rmtree(root, ignore_errors=True)
    target = root / PACKAGE.name / "native"
    target.mkdir(parents=True)
    (root / PACKAGE.name / "__init__.py").write_text("")
    shutil.copyfile(PACKAGE / "native" / "__init__.py", target / "__init__.py")
    sources = []
    for name, relative in native_modules().items():
        source = (PACKAGE / relative).read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        copy = target / f"{name}.py"
        copy.write_bytes(source + f'\nSOURCE_SHA256 = "{digest}"\n'.encode())
        sources.append(str(copy))
    try:
        extensions = mypycify([*sources, "--ignore-missing-imports"], opt_level="3",
                              target_dir=str(Path("build") / "native-c"))
    except (Exception, SystemExit) as error:           # mypyc exits on a type error it finds
        print(f"{PACKAGE.name}: compiled twins not built ({error!r}); installing pure Python")
        return []
    for extension in extensions:
        extension.optional = True           # no compiler: warn and install pure Python
    return extensions


setup(ext_modules=native_extensions())
