"""bioimage.io model packages: export a run (`unetkit export RUN --format bioimageio`) and run packages unetkit wrote.

Needs the optional `bioimageio.core` package for export (`pip install "unetkit[bioimageio]"`); reading a
package unetkit wrote needs nothing beyond unetkit.
"""

from .load import is_package, load_package
from .package import PACKAGE_SUFFIX, PackageResult, export_package

__all__ = ["is_package", "load_package", "PACKAGE_SUFFIX", "PackageResult", "export_package"]
