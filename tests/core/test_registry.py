"""The paper registry: a paper is registered by its package's SPEC alone; the tab order comes from SPEC.order."""

from explorer.core import registry


def test_papers_are_found_from_their_specs_in_tab_order():
    ids = registry.paper_ids()
    assert ids == ("srnn", "l2l", "transducer", "bptt", "compression", "shapes3d")
    assert registry.PAPER_IDS == ids
    specs = registry.all_specs()
    assert [s.id for s in specs] == list(ids)
    assert [s.order for s in specs] == sorted(s.order for s in specs)


def test_an_unknown_id_is_one_readable_error():
    import pytest

    from explorer.core.errors import UserError

    with pytest.raises(UserError, match="unknown paper id 'nope'.*srnn, l2l"):
        registry.get_spec("nope")
