"""Every integration guide is linked from the README and from the guides' index."""

from __future__ import annotations

from integrations.guide import GUIDES

README = GUIDES.parents[1] / "README.md"


def test_every_guide_is_linked_from_the_readme_and_the_index() -> None:
    guides = sorted(p.name for p in GUIDES.glob("*.md") if p.name != "README.md")
    assert {"fastapi-starlette.md", "flask.md", "django.md", "celery.md"} <= set(guides)
    readme, index = README.read_text(), (GUIDES / "README.md").read_text()
    for guide in guides:
        assert f"(docs/integrations/{guide})" in readme, guide
        assert f"({guide})" in index, guide
