"""The code's shape: no import circles, one package per stage, heavy imports where used."""

import re

from tests.helpers.imports import REPO, closure, cycles, imports_of, project_modules

STAGE_PACKAGES = ("ingest", "prepare", "validate", "train", "evaluate", "register", "compress",
                  "package", "serve", "monitor")  # fmt: skip


def test_no_import_circles_between_project_modules():
    assert cycles() == []


def test_no_import_circles_even_among_the_imports_made_for_types():
    """Issue 39: 16 modules of core/ (config, data_config, the kinds, splits) made a circle
    through their ``if TYPE_CHECKING:`` imports; core reads bottom-up as the stages do."""
    assert cycles(types=True) == []


def test_the_circle_finder_finds_a_circle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are reported."""
    from tests.helpers import imports

    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "a.py").write_text("from components.b import x\n")
    (tmp_path / "components" / "b.py").write_text("def f():\n    from components import a\n")
    monkeypatch.setattr(imports, "REPO", tmp_path)
    monkeypatch.setattr(imports, "PACKAGES", ("components",))
    imports.imports_of.cache_clear()
    try:
        assert imports.cycles() == [["components.a", "components.b"]]
    finally:
        imports.imports_of.cache_clear()


def test_one_package_per_stage_each_with_its_stage_module():
    from components.core.stages import STAGES

    packages = {p.name for p in (REPO / "components").iterdir() if (p / "__init__.py").is_file()}
    assert packages == {"core", *STAGE_PACKAGES}
    assert [p.name for p in (REPO / "components").glob("*.py")] == ["__init__.py"]
    for stage, target in STAGES.items():
        module = target.split(":")[0]
        assert module.endswith(".stage"), (stage, module)


def test_core_imports_no_stage_package():
    core = [m for m in project_modules() if m.startswith("components.core")]
    for module in core:
        for imported in imports_of(module):
            assert imported.startswith("components.core"), (
                f"{module} imports {imported}: core must not depend on a stage"
            )


def test_the_training_loop_imports_only_what_a_bare_gpu_machine_has():
    """``fit`` runs where only torch, lightning, numpy, pandas and sklearn exist."""
    reached = closure(["components.train.trainer"])
    for light_only in ("components.core.tracking", "components.core.config"):
        assert light_only not in reached, reached  # MLflow, pydantic: not on that machine


def test_every_mloop_variable_is_read_through_the_settings_object_and_documented():
    import re

    from components.core.settings import Settings

    # a read: environ.get("MLOOP_...") or environ["MLOOP_..."] not followed by "=" (a write)
    direct = re.compile(r"""environ\.get\(\s*["']MLOOP_|environ\[["']MLOOP_\w+["']\](?!\s*=)""")
    for module in project_modules():
        path = REPO / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / module.replace(".", "/") / "__init__.py"
        assert not direct.search(path.read_text()), f"{module} reads an MLOOP_* variable itself"
    reference = (REPO / "docs" / "settings.md").read_text()  # generated, kept fresh by a test
    for field in Settings.model_fields:
        assert f"`MLOOP_{field.upper()}`" in reference, f"MLOOP_{field.upper()} is not documented"


def test_every_workspace_state_path_comes_from_core_paths():
    """``.mloop/...`` files are named once, in ``components/core/paths.py``: no module
    joins a name onto the state folder itself."""
    import re

    joined = re.compile(r"\.state\s*/")
    found = []
    for folder in ("components", "flows", "pipelines"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.relative_to(REPO).as_posix() == "components/core/paths.py":
                continue
            lines = enumerate(path.read_text().splitlines(), 1)
            found += [f"{path.relative_to(REPO)}:{n}" for n, line in lines if joined.search(line)]
    assert found == [], found


KIND_COMPARISONS_ALLOWED = 4  # issue 27: fewer than 5 outside the kinds package (76 before)
KIND_COMPARISON = re.compile(
    r"""(kind|source)\s*[!=]=|[!=]=\s*["'](image|images|tabular|text|digits|synthetic)["']"""
    r"""|\bin\s*\(\s*["'](image|images|tabular|text)["']"""
)


def test_kind_strings_are_compared_no_more_often_than_today():
    """Stages ask the data kind (``components/core/kinds``: what it is made of, its batch
    format, its noun, its route, its default family) instead of comparing its name: fewer
    than 5 comparisons outside the kinds' package (76 when the kinds package arrived; 1 now,
    the service checking that a route's kind is its model's)."""
    found = []
    for folder in ("components", "flows", "pipelines"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if "kinds" in path.relative_to(REPO).parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if KIND_COMPARISON.search(line.split("#")[0]):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert len(found) <= KIND_COMPARISONS_ALLOWED, "\n".join(found)
