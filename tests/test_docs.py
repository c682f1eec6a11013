"""The docs a newcomer reads: generated references in step with the code, links that lead
somewhere, a README that stays short."""

import re

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["params.md", "settings.md"])
def test_the_generated_references_are_in_step_with_the_models(name):
    from components.core.reference import DOCS, REFERENCES

    written = (DOCS / name).read_text()
    assert written == REFERENCES[name](), (
        f"docs/{name} is stale: run `python -m components.core.reference` and commit it"
    )


def test_every_key_and_variable_is_in_its_reference():
    from components.core.config import Params
    from components.core.reference import params_reference, rows, settings_reference
    from components.core.settings import Settings

    params, settings = params_reference(), settings_reference()
    for key in ("data.tabular.conflicts", "validate.range_mostly", "register.metric",
                "compress.distill.temperature", "ingest.row_policy"):  # fmt: skip
        assert f"| `{key}` |" in params
    assert len(rows(Params)) > 100
    for name in Settings.model_fields:
        assert f"| `MLOOP_{name.upper()}` |" in settings


def test_a_new_field_changes_the_reference_with_its_comment():
    """The reference reads the model, not a copy of it: a field added shows up."""
    from pydantic import BaseModel

    from components.core.reference import rows

    class Probe(BaseModel):
        kept: int = 3  # how many are kept
        # a block comment
        # over two lines
        named: str = "x"

    assert rows(Probe) == [
        ("kept", "int", "`3`", "how many are kept"),
        ("named", "str", "`'x'`", "a block comment over two lines"),
    ]


def test_the_readme_is_short_and_its_links_lead_to_files():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert readme.startswith("# mloop") and "make run" in readme and "make test" in readme
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (REPO / target).exists(), f"README links to {target}, which is not there"
    for page in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
