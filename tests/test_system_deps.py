"""`make system-deps` installs every Debian font package the code reads (issue 17's fonts)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.rendered_digits import TEST_FONTS, VALIDATION_FONTS, font_package
from tests.service_process import REPO
from training.datasets.digit_rendering import FONTS, HAND_FONTS, MORE_FONTS, STROKE_FONTS


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
    wanted = {font_package(name) for name in {**TEST_FONTS, **VALIDATION_FONTS}}
    wanted |= set(FONTS) | set(MORE_FONTS) | set(HAND_FONTS) | set(STROKE_FONTS)
    assert not wanted - set(printed), (
        f"not in the Makefile's FONT_PACKAGES: {wanted - set(printed)}"
    )
