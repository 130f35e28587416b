"""Engine source handling: the CHANGELOG commit, and patches that do not apply."""
import subprocess

import pytest

from edgemoe.engine import EngineError, apply_patches, changelog_commit

CHANGELOG = """# Changelog
## [Unreleased]

## [0.3.6]

- feat: Update llama.cpp to ggerganov/llama.cpp@f7cd13301c2a88f97073fd119072b4cc92c08df1

## [0.3.5]

- feat: Update llama.cpp to ggerganov/llama.cpp@26a8406ba9198eb6fdd8329fa717555b4f77f05f
"""


def test_commit_from_changelog():
    assert changelog_commit(CHANGELOG, "0.3.6") == "f7cd13301c2a88f97073fd119072b4cc92c08df1"
    assert changelog_commit(CHANGELOG, "0.3.5").startswith("26a8406ba")
    with pytest.raises(EngineError, match="no section for version 0.3.9"):
        changelog_commit(CHANGELOG, "0.3.9")


def make_patch(tmp_path):
    a = tmp_path / "a"
    (a / "src").mkdir(parents=True)
    (a / "src/loop.c").write_text("int main(void) {\n    return 0;\n}\n")
    b = tmp_path / "b"
    (b / "src").mkdir(parents=True)
    (b / "src/loop.c").write_text("int main(void) {\n    /* timed */\n    return 0;\n}\n")
    diff = subprocess.run(["diff", "-ru", "a", "b"], cwd=tmp_path, capture_output=True, text=True).stdout
    patch = tmp_path / "0001-timing.patch"
    patch.write_text(diff)
    return a, patch


def test_patch_applies_and_is_recorded(tmp_path):
    tree, patch = make_patch(tmp_path)
    (applied,) = apply_patches(tree, [patch], "e")
    assert applied["name"] == "0001-timing.patch" and len(applied["sha256"]) == 64
    assert "/* timed */" in (tree / "src/loop.c").read_text()


def test_a_patch_for_another_engine_fails_naming_it(tmp_path):
    tree, patch = make_patch(tmp_path)
    (tree / "src/loop.c").write_text("int main(int argc, char **argv) {\n    return argc;\n}\n")  # other version
    with pytest.raises(EngineError, match=r"patch 0001-timing.patch does not apply to engine e .* made for another"):
        apply_patches(tree, [patch], "e")


def test_a_build_folder_from_another_work_folder_starts_afresh(tmp_path):
    from edgemoe.engine import _drop_foreign_cache

    src, other = tmp_path / "source", tmp_path / "elsewhere/source"
    src.mkdir()
    for home, kept in [(src, True), (other, False)]:
        build = tmp_path / "build"
        build.mkdir(exist_ok=True)
        (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={home}\n")
        _drop_foreign_cache(build, src.resolve())
        assert build.exists() == kept
