"""The documentation cannot drift from the code: the generated parts (every stage's `--help`,
every config key of the schema) are current, every stage has a page naming all of its rules,
and every relative link resolves."""

from __future__ import annotations

import re

from conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])


STAGE_RULE_FILES = sorted(
    p for p in (REPO / "workflow" / "rules").glob("*.smk") if p.name != "common.smk"
)


def test_every_stage_has_a_page_naming_its_rules_and_its_command_line():
    for rule_file in STAGE_RULE_FILES:
        page = REPO / "docs" / "stages" / f"{rule_file.stem}.md"
        assert page.is_file(), f"{rule_file.name} has no page {page.relative_to(REPO)}"
        text = page.read_text()
        rules = re.findall(r"^rule (\w+):", rule_file.read_text(), flags=re.M)
        unnamed = [r for r in rules if f"`{r}`" not in text and not r.startswith("exp_")]
        assert not unnamed, f"{page.name} does not name the rules {unnamed}"
        assert "<!-- generated: cli " in text, f"{page.name} has no command-line section"
        assert f"`{rule_file.name}`" in (REPO / "README.md").read_text()  # the stage map


def test_every_schema_key_is_in_the_config_reference():
    import yaml

    text = (REPO / "docs" / "config.md").read_text()
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for section, node in schema["properties"].items():
        assert f"| `{section}` |" in text, section
        for key in node.get("properties", {}):
            assert f"| `{section}.{key}` |" in text, f"{section}.{key}"


def test_no_page_refers_to_the_project_s_issue_tracker():
    """The docs are for readers, who cannot see the tracker: a page says what holds and why,
    not which ticket asked for it (the dated record is in docs/archive/ and git history)."""
    pages = [*PAGES, *(REPO / "src").rglob("*.md")]
    cited = [
        f"{page.relative_to(REPO)}:{number}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if re.search(r"\bissues?\b", line, re.I)
    ]
    assert not cited, cited


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
