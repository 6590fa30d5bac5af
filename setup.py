"""Everything is in pyproject.toml, except what pyproject cannot say: cffi's ``cffi_modules``,
which writes the out-of-line libcrypto and libc bindings at build time (build_cffi.py;
nothing compiled).

cffi writes them into the build folder, which a wheel packs. ``pip install -e`` imports the
package from the source tree instead, so there it is written beside the sources too.
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            for builder in runpy.run_path(str(HERE / "build_cffi.py"))["BUILDERS"]:
                builder.compile(tmpdir=str(HERE))


setup(
    cmdclass={"build_py": BuildPy},
    cffi_modules=["build_cffi.py:ffibuilder", "build_cffi.py:libc_builder"],
)
