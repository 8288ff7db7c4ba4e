"""`make system-deps` installs every Debian font package the code reads (issue 17's fonts)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.rendered_digits import TEST_FONTS, VALIDATION_FONTS
from tests.service_process import REPO
from training.datasets.digit_rendering import FONTS


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_system_deps_installs_every_font_package() -> None:
    printed = subprocess.run(
        ["make", "-s", "--eval", "print-fonts: ; @echo $(FONT_PACKAGES)", "print-fonts"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # the acceptance and validation sets name a few faces by package plus "-bold" / "-build"
    wanted = {pkg.removesuffix("-bold").removesuffix("-build") for pkg in TEST_FONTS}
    wanted |= {pkg.removesuffix("-bold").removesuffix("-build") for pkg in VALIDATION_FONTS}
    wanted |= set(FONTS)
    assert not wanted - set(printed), (
        f"not in the Makefile's FONT_PACKAGES: {wanted - set(printed)}"
    )
