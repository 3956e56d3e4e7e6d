"""Builds labsim-trtllm with its executor replica's layers compiled together, one group of twins: labsim's
``native_build``, loaded by path from this repository (the build runs without labsim installed)."""

import runpy
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
BUILD = HERE.parents[1] / "core" / "src" / "labsim" / "native_build.py"
setup(ext_modules=runpy.run_path(str(BUILD))["native_extensions"](HERE) if BUILD.is_file() else [])
