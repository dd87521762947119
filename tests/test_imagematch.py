"""The type-ahead's index against a plain oracle (rank every image, sort), and the command's image resolution."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cloud import Image
from bot.services.imagematch import (
    EXACT,
    ID_PREFIX,
    MAX_QUERY,
    SearchIndex,
    clean_query,
    closest,
    rank,
    resolve,
)


def image(name: str, n: int = 0, kind: str = "gold", image_id: str | None = None) -> Image:
    return Image.model_validate(
        {"id": image_id or f"{n:08x}-0000-4000-8000-000000000000", "name": name, "__imagetype": kind}
    )


def oracle(images: list[Image], text: str, limit: int) -> list[str]:
    """Rank each image on its own; ties by name, except ID prefixes (by ID) and exact: names before IDs."""
    query = clean_query(text).lower()

    def key(pair: tuple[int, Image]) -> tuple[object, ...]:
        tier, img = pair
        if tier == EXACT:
            return (tier, img.name.lower() != query, img.name.lower(), img.id)
        if tier == ID_PREFIX:
            return (tier, img.id.lower())
        return (tier, img.name.lower(), img.id)

    ranked = [(r, i) for i in images if (r := rank(i, query)) is not None]
    return [i.id for _, i in sorted(ranked, key=key)[:limit]]


WORDS = st.sampled_from(["ubuntu", "Ubuntu", "centos", "web", "22.04", "64bit", "arm", "-", " ", "win", "bak", "u"])
NAMES = st.lists(WORDS, min_size=1, max_size=4).map("".join)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.lists(NAMES, min_size=0, max_size=40),
    st.one_of(WORDS, NAMES, st.sampled_from(["", "0000000", "00000003", "zz"])),
    st.integers(min_value=1, max_value=12),
)
def test_the_index_orders_like_ranking_each_image(names: list[str], typed: str, limit: int) -> None:
    images = [image(name, n) for n, name in enumerate(names)]
    index = SearchIndex(images)
    found = [i.id for i in index.search(typed, limit=limit)]
    if clean_query(typed):
        assert found == oracle(images, typed, limit)
    else:
        assert len(found) == min(limit, len(images))


def test_exact_then_prefix_then_word_then_anywhere() -> None:
    images = [
        image("my ubuntu-ish", 1),
        image("xubuntu 22", 2),
        image("Ubuntu 22.04", 3),
        image("ubuntu", 4),
        image("ubuntu 20.04", 5),
    ]
    assert [i.name for i in SearchIndex(images).search("UBUNTU")] == [
        "ubuntu",
        "ubuntu 20.04",
        "Ubuntu 22.04",
        "my ubuntu-ish",
        "xubuntu 22",
    ]


def test_an_id_prefix_finds_the_image_and_an_empty_query_lists_own_images_first() -> None:
    images = [image("b-public", 1), image("a-shared", 2, "shared"), image("z-private", 3, "private")]
    index = SearchIndex(images)
    assert [i.name for i in index.search("00000002")] == ["a-shared"]
    assert [i.name for i in index.search("   ")] == ["z-private", "b-public", "a-shared"]
    labels = [label for label, _ in index.grouped("")]
    assert labels == ["Private images (this project)", "Public images", "Shared with this project"]


def test_the_answer_and_the_typed_text_are_bounded() -> None:
    images = [image(f"ubuntu-{n:04d}", n) for n in range(500)]
    index = SearchIndex(images)
    assert len(index.search("ubuntu")) == 100 and len(index.search("")) == 100
    assert len(clean_query("u" * 5000)) == MAX_QUERY and index.search("u" * 5000) == []
    assert clean_query(None) == "" and clean_query(["ubuntu"]) == ""


def test_rendered_values_are_built_once_per_index() -> None:
    index = SearchIndex([image("a", 1), image("b", 2)])
    calls: list[str] = []
    first = index.rendered("label", lambda i: calls.append(i.name) or i.name.upper())
    again = index.rendered("label", lambda i: calls.append(i.name) or "")
    assert first == ["A", "B"] and again is first and calls == ["a", "b"]


def test_resolution_never_guesses() -> None:
    usable = [image("ubuntu-22.04", 1), image("ubuntu-20.04", 2), image("windows-2022", 3), image("twin", 4)]
    allowed = usable[:3]
    assert resolve("Ubuntu-22.04", usable, allowed).image is usable[0]
    assert resolve(usable[1].id.upper(), usable, allowed).image is usable[1]
    assert resolve("win", usable, allowed).image is usable[2], "a unique prefix"
    several = resolve("ubuntu", usable, allowed)
    assert several.image is None and several.ambiguous and {i.name for i in several.matches} == {
        "ubuntu-22.04",
        "ubuntu-20.04",
    }
    assert resolve("twin", usable, allowed).image is usable[3], "exact: chosen even if forbidden (the plan says so)"
    assert resolve("tw", usable, allowed).image is None, "a prefix only among allowed images"
    none = resolve("ubuntu-22.4", usable, allowed)
    assert none.image is None and not none.matches and none.suggestions[0] == "ubuntu-22.04"
    assert resolve("  ", usable, allowed) == resolve("", usable, allowed)


def test_two_images_with_the_same_name_are_listed_not_picked() -> None:
    same = [image("CentOS 7.9 64bit", 1), image("CentOS 7.9 64bit", 2)]
    found = resolve("centos 7.9 64bit", same, same)
    assert found.image is None and len(found.matches) == 2 and found.total == 2


def test_closest_names_are_few() -> None:
    images = [image(f"ubuntu-{n}", n) for n in range(50)]
    assert len(closest("ubuntu", images)) == 5
